"""Strip identifying metadata from image and audio bytes without touching the pixels or samples.

Used by the `pii` stage. Why byte-level surgery instead of decode → re-encode: re-encoding a JPEG loses quality
and changes every byte, and a decoder round trip may drop colour profiles. Here EXIF is edited in place as a TIFF
structure (entries removed from their IFD, the freed value bytes zeroed, so every other offset stays valid);
whole segments/chunks that only carry metadata (XMP, IPTC, comments, ID3, RIFF INFO) are cut out. Compressed image
data (JPEG scan, PNG IDAT, TIFF strips) and audio frames are copied verbatim, so the decoded pixels are identical.

What is removed: GPS position, camera/lens serial numbers and unique image id, owner/artist/author names, maker
notes (vendor blobs that hold serials and sometimes owner names), user comments; XMP and IPTC packets (they repeat
GPS and creator fields); JPEG comments; PNG text chunks except a harmless whitelist; audio tags (ID3v1/v2, APE,
RIFF INFO and id3 chunks, or any tag mutagen can delete for other formats). Each removal is recorded by category
(e.g. ``exif.gps``), never by value.
"""

from __future__ import annotations

import io
import struct
import zlib

# Tags removed wherever they appear (IFD0, Exif IFD, IFD1), by category.
_EXIF_TAGS = {
    0x8825: "exif.gps",  # GPSInfo IFD pointer
    0x013B: "exif.owner_name",  # Artist
    0x9C9D: "exif.owner_name",  # XPAuthor
    0xA430: "exif.owner_name",  # CameraOwnerName
    0xA431: "exif.serial_number",  # BodySerialNumber
    0xA435: "exif.serial_number",  # LensSerialNumber
    0xC62F: "exif.serial_number",  # CameraSerialNumber (DNG)
    0xA420: "exif.unique_id",  # ImageUniqueID
    0x927C: "exif.maker_note",
    0x9286: "exif.user_comment",
    0x9C9C: "exif.user_comment",  # XPComment
    0x013C: "exif.host_computer",
}
_SUB_IFDS = (0x8769, 0xA005)  # Exif IFD, Interoperability IFD: walked, not removed
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}


class _Tiff:
    """In-place editor of a classic TIFF structure (a TIFF file, or the payload of an EXIF block)."""

    def __init__(self, buf: bytearray, base: int = 0, end: int | None = None):
        self.buf, self.base = buf, base
        self.end = len(buf) if end is None else end
        order = bytes(buf[base : base + 2])
        if order == b"II":
            self.e = "<"
        elif order == b"MM":
            self.e = ">"
        else:
            raise ValueError("not a TIFF structure")
        if self._u16(2) != 42:
            raise ValueError("not a classic TIFF structure")

    def _u16(self, off: int) -> int:
        return struct.unpack_from(self.e + "H", self.buf, self.base + off)[0]

    def _u32(self, off: int) -> int:
        return struct.unpack_from(self.e + "I", self.buf, self.base + off)[0]

    def _ok(self, off: int, size: int) -> bool:
        return 0 <= off and self.base + off + size <= self.end

    def _zero(self, off: int, size: int) -> None:
        if size > 0 and self._ok(off, size):
            self.buf[self.base + off : self.base + off + size] = bytes(size)

    def _entries(self, ifd: int) -> list[tuple[int, int, int, bytes]]:
        n = self._u16(ifd)
        out = []
        for k in range(n):
            p = ifd + 2 + 12 * k
            tag, typ, count = struct.unpack_from(self.e + "HHI", self.buf, self.base + p)
            out.append((tag, typ, count, bytes(self.buf[self.base + p + 8 : self.base + p + 12])))
        return out

    def _value_extent(self, typ: int, count: int, raw: bytes) -> tuple[int, int] | None:
        size = _TYPE_SIZE.get(typ, 1) * count
        if size <= 4:
            return None
        return struct.unpack(self.e + "I", raw)[0], size

    def _wipe_ifd(self, ifd: int, seen: set[int]) -> None:
        """Zero a whole IFD (e.g. GPS) and the out-of-line values of its entries."""
        if ifd in seen or not self._ok(ifd, 2):
            return
        seen.add(ifd)
        n = self._u16(ifd)
        if not self._ok(ifd, 2 + 12 * n + 4):
            return
        for _tag, typ, count, raw in self._entries(ifd):
            ext = self._value_extent(typ, count, raw)
            if ext:
                self._zero(*ext)
        self._zero(ifd, 2 + 12 * n + 4)

    def scrub(self) -> list[str]:
        removed: list[str] = []
        seen: set[int] = set()
        ifd = self._u32(4)
        chain = 0
        while ifd and chain < 8 and ifd not in seen:
            nxt = self._scrub_ifd(ifd, removed, seen)
            ifd, chain = nxt, chain + 1
        return sorted(set(removed))

    def _scrub_ifd(self, ifd: int, removed: list[str], seen: set[int]) -> int:
        if not self._ok(ifd, 2):
            return 0
        n = self._u16(ifd)
        if n == 0 or not self._ok(ifd, 2 + 12 * n + 4):
            return 0
        seen.add(ifd)
        entries = self._entries(ifd)
        next_ifd = self._u32(ifd + 2 + 12 * n)
        keep = []
        for tag, typ, count, raw in entries:
            if tag in _EXIF_TAGS:
                removed.append(_EXIF_TAGS[tag])
                if tag == 0x8825:
                    self._wipe_ifd(struct.unpack(self.e + "I", raw)[0], seen)
                else:
                    ext = self._value_extent(typ, count, raw)
                    if ext:
                        self._zero(*ext)
                continue
            if tag in _SUB_IFDS:
                self._scrub_ifd(struct.unpack(self.e + "I", raw)[0], removed, seen)
            keep.append((tag, typ, count, raw))
        if len(keep) != len(entries):
            # Rewrite this IFD in place, shorter: entries stay sorted, inline values move with their entries.
            p = self.base + ifd
            self.buf[p : p + 2 + 12 * n + 4] = bytes(2 + 12 * n + 4)
            struct.pack_into(self.e + "H", self.buf, p, len(keep))
            for k, (tag, typ, count, raw) in enumerate(keep):
                struct.pack_into(self.e + "HHI", self.buf, p + 2 + 12 * k, tag, typ, count)
                self.buf[p + 2 + 12 * k + 8 : p + 2 + 12 * k + 12] = raw
            struct.pack_into(self.e + "I", self.buf, p + 2 + 12 * len(keep), next_ifd)
        return next_ifd


def scrub_tiff_block(data: bytes) -> tuple[bytes, list[str]]:
    """Scrub a TIFF structure (same length out); unparseable input is returned unchanged with no removals."""
    buf = bytearray(data)
    try:
        removed = _Tiff(buf).scrub()
    except (ValueError, struct.error):
        return data, []
    return (bytes(buf), removed) if removed else (data, [])


# ------------------------------------------------------------------ images

_XMP_IDS = (b"http://ns.adobe.com/xap/1.0/\x00", b"http://ns.adobe.com/xmp/extension/\x00")


def scrub_jpeg(data: bytes) -> tuple[bytes, list[str]]:
    if data[:2] != b"\xff\xd8":
        return data, []
    out = [data[:2]]
    removed: list[str] = []
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return data, []  # malformed: leave it alone rather than risk the image
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            out.append(data[pos : pos + 1])
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            out.append(data[pos : pos + 2])
            pos += 2
            continue
        if marker == 0xD9:
            out.append(data[pos:])
            break
        length = struct.unpack_from(">H", data, pos + 2)[0]
        seg_end = pos + 2 + length
        if length < 2 or seg_end > n:
            return data, []
        payload = data[pos + 4 : seg_end]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded image data, copied verbatim
            out.append(data[pos:])
            break
        if marker == 0xE1 and payload.startswith(b"Exif\x00\x00"):
            tiff, what = scrub_tiff_block(payload[6:])
            removed += what
            out.append(data[pos : pos + 4] + b"Exif\x00\x00" + tiff)
        elif marker == 0xE1 and payload.startswith(_XMP_IDS):
            removed.append("xmp")
        elif marker == 0xED:  # APP13: Photoshop IRB / IPTC (by-line, location)
            removed.append("iptc")
        elif marker == 0xFE:
            removed.append("jpeg.comment")
        else:
            out.append(data[pos:seg_end])
        pos = seg_end
    else:
        out.append(data[pos:])
    if not removed:
        return data, []
    return b"".join(out), sorted(set(removed))


_PNG_SIG = b"\x89PNG\r\n\x1a\n"
# Text chunk keywords kept (describe the image or the software, not a person).
_PNG_TEXT_KEEP = {"Title", "Software", "Creation Time", "Disclaimer", "Warning", "Source"}


def scrub_png(data: bytes) -> tuple[bytes, list[str]]:
    if not data.startswith(_PNG_SIG):
        return data, []
    out = [_PNG_SIG]
    removed: list[str] = []
    pos = 8
    while pos + 12 <= len(data):
        length = struct.unpack_from(">I", data, pos)[0]
        ctype = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            return data, []
        body = data[pos + 8 : pos + 8 + length]
        if ctype == b"eXIf":
            tiff, what = scrub_tiff_block(body)
            removed += what
            out.append(data[pos : pos + 8] + tiff + struct.pack(">I", zlib.crc32(ctype + tiff) & 0xFFFFFFFF))
        elif ctype in (b"tEXt", b"zTXt", b"iTXt"):
            key = body.split(b"\x00", 1)[0].decode("latin-1", "replace")
            if key in _PNG_TEXT_KEEP:
                out.append(data[pos:end])
            else:
                removed.append(
                    "xmp"
                    if key == "XML:com.adobe.xmp"
                    else "exif"
                    if key.startswith("Raw profile type")
                    else "png.text"
                )
        else:
            out.append(data[pos:end])
        pos = end
        if ctype == b"IEND":
            break
    out.append(data[pos:])
    if not removed:
        return data, []
    return b"".join(out), sorted(set(removed))


def scrub_tiff(data: bytes) -> tuple[bytes, list[str]]:
    """TIFF files: the EXIF tags live in the image's own IFDs; edited in place, strips untouched."""
    return scrub_tiff_block(data)


# ------------------------------------------------------------------ audio


def scrub_wav(data: bytes) -> tuple[bytes, list[str]]:
    if data[:4] != b"RIFF" or data[8:12] not in (b"WAVE", b"AVI "):
        return data, []
    out = [b""]
    removed: list[str] = []
    pos = 12
    n = len(data)
    while pos + 8 <= n:
        cid = data[pos : pos + 4]
        size = struct.unpack_from("<I", data, pos + 4)[0]
        end = min(n, pos + 8 + size + (size & 1))
        if cid == b"LIST" and data[pos + 8 : pos + 12] == b"INFO":
            removed.append("riff.info")
        elif cid in (b"id3 ", b"ID3 "):
            removed.append("id3v2")
        elif cid == b"bext":  # broadcast extension: originator names and references
            removed.append("riff.bext")
        else:
            out.append(data[pos:end])
        pos = end
    if not removed:
        return data, []
    body = b"".join(out) + data[pos:]
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + data[8:12] + body, sorted(set(removed))


def _syncsafe(b: bytes) -> int:
    return (b[0] << 21) | (b[1] << 14) | (b[2] << 7) | b[3]


def scrub_mp3(data: bytes) -> tuple[bytes, list[str]]:
    removed: list[str] = []
    start, end = 0, len(data)
    while data[start : start + 3] == b"ID3" and start + 10 <= end:
        size = _syncsafe(data[start + 6 : start + 10]) + 10 + (10 if data[start + 5] & 0x10 else 0)
        start += size
        removed.append("id3v2")
    if end - start >= 128 and data[end - 128 : end - 125] == b"TAG":
        end -= 128
        removed.append("id3v1")
        if end - start >= 227 and data[end - 227 : end - 223] == b"TAG+":
            end -= 227
    if end - start >= 32 and data[end - 32 : end - 24] == b"APETAGEX":
        size, flags = struct.unpack_from("<II", data, end - 32 + 12)
        total = size + (32 if flags & 0x80000000 else 0)
        if total <= end - start:
            end -= total
            removed.append("ape")
    if not removed:
        return data, []
    return data[start:end], sorted(set(removed))


def _scrub_with_mutagen(data: bytes) -> tuple[bytes, list[str]]:
    try:
        import mutagen

        bio = io.BytesIO(data)
        f = mutagen.File(bio)
        if f is None or not f.tags:
            return data, []
        bio.seek(0)
        f.delete(bio)
        new = bio.getvalue()
        return (new, ["tags"]) if new != data else (data, [])
    except Exception:  # unknown or damaged container: keep bytes, record nothing
        return data, []


def sniff(data: bytes) -> str | None:
    if data[:2] == b"\xff\xd8":
        return "jpeg"
    if data.startswith(_PNG_SIG):
        return "png"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "wav"
    if data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def scrub_media_bytes(
    data: bytes, modality: str | None = None, mime: str | None = None, uri: str | None = None
) -> tuple[bytes, list[str]]:
    """Return (new bytes, removed categories). Bytes come back unchanged (same object) when nothing is removed."""
    kind = sniff(data)
    fn = {"jpeg": scrub_jpeg, "png": scrub_png, "tiff": scrub_tiff, "wav": scrub_wav, "mp3": scrub_mp3}.get(
        kind or ""
    )
    if fn is not None:
        return fn(data)
    if modality == "audio":
        return _scrub_with_mutagen(data)
    return data, []
