"""Bounded decompression: the one path every reader uses to inflate a compressed stream.

Why: a few KB of gzip, zstd or bz2 can inflate to many GB (a 4.5 KB ``.warc.gz`` reached 12.5 GB RSS through one
unbounded ``gzip.decompress``). Here every codec produces output in bounded chunks, so memory never depends on
what a stream inflates to, and hostile streams become typed errors (``DecompressionError`` and subclasses, each
with the quarantine ``reason`` readers record and a PII-free ``detail``: sizes and ratios only):

- ratio cap (``input.max_compression_ratio``): output / compressed bytes consumed, checked once more than
  ``RATIO_MIN_OUTPUT`` bytes came out (small, very compressible files pass). It bounds the work one compressed
  byte can cause, which is what a bomb attacks: memory is already bounded by the chunking;
- size cap (``max_output``): for streams that are one record (an HTTP body, a zip member by its declared size);
- truncation: a stream that ends inside a gzip member, a bz2 stream or a zstd frame raises ``TruncatedStream``.
  libzstd's streaming reader reports a cut frame as a clean end of file, so zstd frames are followed by their
  headers (``ZstdFrameWalker``) to tell the two apart.

Codecs: ``gzip`` (multi-member, zero padding between members), ``zstd`` (multi-frame, skippable frames), ``bz2``
(multi-stream), ``zlib`` and ``deflate`` (raw; zip members, HTTP ``Content-Encoding: deflate``), ``br`` (when the
``brotli`` module is importable) and ``None`` (stored: copied, still counted and capped).
"""

from __future__ import annotations

import bz2
import io
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO

# Output below this never counts as a bomb, whatever its ratio: small, highly compressible files are normal.
RATIO_MIN_OUTPUT = 4 << 20
# Default of input.max_compression_ratio (refinery/config.py holds the same literal, see its comment).
DEFAULT_MAX_RATIO = 500.0
# Compressed bytes read per step, and the buffer of the file-like wrapper (one readinto produces at most this).
_IN_CHUNK = 64 << 10
BUFFER_SIZE = 1 << 20

# File name suffix → codec, for inputs such as x.jsonl.gz.
FILE_CODECS = ((".gz", "gzip"), (".zst", "zstd"), (".zstd", "zstd"), (".bz2", "bz2"))
GZIP_MAGIC = b"\x1f\x8b"


class DecompressionError(Exception):
    """A compressed stream that cannot be read to its end; ``reason`` is the quarantine reason."""

    reason = "corrupt_compressed_stream"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class TruncatedStream(DecompressionError):
    reason = "truncated_compressed_stream"


class CorruptStream(DecompressionError):
    reason = "corrupt_compressed_stream"


class DecompressionBomb(DecompressionError):
    reason = "decompression_bomb"


class OutputTooLarge(DecompressionError):
    reason = "record_too_large"


def ratio_exceeded(output: int, compressed: int, max_ratio: float | None) -> bool:
    """True when `output` bytes from `compressed` bytes crosses the ratio cap (never below RATIO_MIN_OUTPUT)."""
    return max_ratio is not None and output > RATIO_MIN_OUTPUT and output > max_ratio * max(compressed, 1)


def bomb_detail(output: int, compressed: int, max_ratio: float | None, what: str = "") -> str:
    ratio = output / max(compressed, 1)
    return f"{what}{output} bytes from {compressed} compressed bytes (ratio {ratio:.0f} > max_compression_ratio={max_ratio:g})"


# --- decoders: read(n) returns at most n bytes, b"" at a clean end; `consumed` = compressed bytes used ---------


class _Counted:
    """The compressed input, counting the bytes read. An observer (the zstd frame walker) sees them first and may
    return how many of them to pass on: the rest, and everything after, is withheld (data after the last frame)."""

    def __init__(self, raw: BinaryIO, observer: Callable[[bytes], int | None] | None = None):
        self.raw = raw
        self.count = 0
        self.observer = observer
        self.withheld = False

    def read(self, n: int = -1) -> bytes:
        if self.withheld:
            return b""
        data = self.raw.read(n)
        if self.observer is not None and data:
            keep = self.observer(data)
            if keep is not None and keep < len(data):
                data, self.withheld = data[:keep], True
        self.count += len(data)
        return data


class _Zlib:
    """zlib.decompressobj behind the bz2/lzma decompressor interface (needs_input, input kept inside)."""

    def __init__(self, wbits: int):
        self._d = zlib.decompressobj(wbits)
        self.needs_input = True

    def decompress(self, data: bytes, max_length: int) -> bytes:
        d = self._d
        out = d.decompress(data or d.unconsumed_tail, max_length)
        self.needs_input = not d.unconsumed_tail and len(out) < max_length
        return out

    @property
    def eof(self) -> bool:
        return self._d.eof

    @property
    def unused_data(self) -> bytes:
        return self._d.unused_data

    @property
    def buffered(self) -> int:
        return len(self._d.unconsumed_tail)


_STREAM_CODECS: dict[str, tuple[Callable[[], Any], bool]] = {
    # codec: (decompressor factory, several streams may follow each other)
    "gzip": (lambda: _Zlib(16 + zlib.MAX_WBITS), True),
    "zlib": (lambda: _Zlib(zlib.MAX_WBITS), False),
    "deflate": (lambda: _Zlib(-zlib.MAX_WBITS), False),
    "bz2": (bz2.BZ2Decompressor, True),
}


class _StreamDecoder:
    """gzip / bz2 / zlib / raw deflate with max_length-bounded output; several members when the codec allows."""

    def __init__(self, src: _Counted, codec: str):
        self._src = src
        self._codec = codec
        self._factory, self._multi = _STREAM_CODECS[codec]
        self._dec: Any = None
        self._pending = b""
        self._streams = 0
        self._done = False

    @property
    def consumed(self) -> int:
        return self._src.count - len(self._pending) - getattr(self._dec, "buffered", 0)

    def _start(self) -> bool:
        data = self._pending
        while True:
            if self._streams and self._codec == "gzip":
                data = data.lstrip(
                    b"\0"
                )  # gzip allows zero padding between members (as the gzip module does)
            if data:
                break
            data = self._src.read(_IN_CHUNK)
            if not data:
                return False
        self._pending = data
        self._dec = self._factory()
        self._streams += 1
        return True

    def read(self, n: int) -> bytes:
        while not self._done:
            if self._dec is None and not self._start():
                self._done = True
                break
            dec = self._dec
            data = b""
            if dec.needs_input:
                if not self._pending:
                    self._pending = self._src.read(_IN_CHUNK)
                    if not self._pending:
                        raise TruncatedStream(
                            f"{self._codec} stream {self._streams} ends unfinished after {self._src.count} compressed bytes"
                        )
                data, self._pending = self._pending, b""
            try:
                out = dec.decompress(data, n)
            except (zlib.error, OSError, EOFError, ValueError) as e:
                raise CorruptStream(
                    f"{_error_name(e)} in {self._codec} stream {self._streams} near compressed byte {self.consumed}"
                ) from None
            if dec.eof:
                self._pending = dec.unused_data + self._pending
                self._dec = None
                self._done = not self._multi  # one zlib/deflate stream: what follows it is not ours
            if out:
                return out
        return b""


def _error_name(e: BaseException) -> str:
    name = type(e).__name__
    return f"{type(e).__module__}.{name}" if name == "error" else name  # zlib.error, not a bare "error"


class ZstdFrameWalker:
    """Follows zstd frame and block headers (RFC 8878) over the compressed bytes without decoding them.

    python-zstandard's stream reader ends cleanly on a file cut inside a frame; `complete` says whether the bytes
    seen so far end between frames. Unknown magic numbers stop the walk (libzstd then reports its own error).
    """

    def __init__(self) -> None:
        self._state = "magic"
        self._buf = b""
        self._skip = 0
        self._header_len = 0
        self._checksum = False
        self._seen = 0
        self.unknown = False
        self.unknown_at: int | None = None  # stream offset of the first byte that is not zstd framing

    @property
    def complete(self) -> bool:
        return self.unknown or (self._state == "magic" and not self._buf and not self._skip)

    def _need(self) -> int:
        return {
            "magic": 4,
            "skippable": 4,
            "descriptor": 1,
            "header": self._header_len,
            "block": 3,
            "checksum": 4,
        }[self._state]

    def feed(self, data: bytes) -> int | None:
        """Follow `data`; once something that is not zstd framing starts in it, return how many of its bytes come
        before that (None while everything is framing)."""
        if self.unknown:
            return 0
        start, pos, n = self._seen, 0, len(data)
        self._seen += n
        while pos < n and not self.unknown:
            if self._skip:
                k = min(self._skip, n - pos)
                self._skip -= k
                pos += k
                continue
            need = self._need() - len(self._buf)
            self._buf += data[pos : pos + need]
            pos += need
            if len(self._buf) < self._need():
                return None
            head, self._buf = self._buf, b""
            at = start + pos - len(head)
            self._advance(head)
            if self.unknown:
                self.unknown_at = at
                return max(0, at - start)
        return None

    def _advance(self, head: bytes) -> None:
        state = self._state
        if state == "magic":
            magic = int.from_bytes(head, "little")
            if magic == 0xFD2FB528:
                self._state = "descriptor"
            elif magic & 0xFFFFFFF0 == 0x184D2A50:
                self._state = "skippable"
            else:
                self.unknown = True
        elif state == "skippable":
            self._skip = int.from_bytes(head, "little")
            self._state = "magic"
        elif state == "descriptor":
            d = head[0]
            single = (d >> 5) & 1
            self._checksum = bool(d & 4)
            fcs = (1 if single else 0, 2, 4, 8)[d >> 6]
            self._header_len = (0 if single else 1) + (0, 1, 2, 4)[d & 3] + fcs
            self._state = "header" if self._header_len else "block"
        elif state == "header":
            self._state = "block"
        elif state == "block":
            h = int.from_bytes(head, "little")
            kind = (h >> 1) & 3
            if kind == 3:
                self.unknown = True
                return
            self._skip = 1 if kind == 1 else h >> 3
            if h & 1:
                self._state = "checksum" if self._checksum else "magic"
        else:  # checksum
            self._state = "magic"


class _ZstdDecoder:
    """Multi-frame zstd through python-zstandard's stream reader, whose read(n) returns at most n bytes (its
    decompressobj is not bounded per call). libzstd rejects windows above 128 MiB by default, bounding its state."""

    def __init__(self, src: _Counted):
        import zstandard

        self._walker = ZstdFrameWalker()
        src.observer = self._walker.feed
        self._src = src
        self._error = zstandard.ZstdError
        self._reader = zstandard.ZstdDecompressor().stream_reader(
            src, read_size=_IN_CHUNK, read_across_frames=True
        )

    @property
    def consumed(self) -> int:
        return self._src.count

    def read(self, n: int) -> bytes:
        try:
            out = self._reader.read(n)
        except self._error as e:
            raise CorruptStream(
                f"{type(e).__name__} in zstd stream near compressed byte {self._src.count}"
            ) from None
        if not out:
            if self._src.withheld:
                raise CorruptStream(
                    f"data that is not a zstd frame at compressed byte {self._walker.unknown_at}"
                )
            if not self._walker.complete:
                raise TruncatedStream(
                    f"zstd stream ends inside a frame after {self._src.count} compressed bytes"
                )
        return out


class _BrotliDecoder:
    """Brotli (HTTP ``Content-Encoding: br``) with brotli's output_buffer_limit; the excess over n is kept."""

    def __init__(self, src: _Counted):
        import brotli  # type: ignore[import-not-found]

        self._d = brotli.Decompressor()
        self._error = brotli.error
        self._src = src
        self._extra = b""

    @property
    def consumed(self) -> int:
        return self._src.count

    def read(self, n: int) -> bytes:
        while not self._extra:
            if self._d.is_finished():
                return b""
            data = b""
            if self._d.can_accept_more_data():
                data = self._src.read(_IN_CHUNK)
                if not data:
                    raise TruncatedStream(
                        f"br stream ends unfinished after {self._src.count} compressed bytes"
                    )
            try:
                self._extra = self._d.process(data, output_buffer_limit=n)
            except self._error as e:
                raise CorruptStream(
                    f"{type(e).__name__} in br stream near compressed byte {self._src.count}"
                ) from None
        out, self._extra = self._extra[:n], self._extra[n:]
        return out


class _Stored:
    def __init__(self, src: _Counted):
        self._src = src

    @property
    def consumed(self) -> int:
        return self._src.count

    def read(self, n: int) -> bytes:
        return self._src.read(n)


def brotli_available() -> bool:
    try:
        import brotli  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return False
    return True


def _decoder(raw: BinaryIO, codec: str | None) -> Any:
    src = _Counted(raw)
    if codec is None:
        return _Stored(src)
    if codec == "zstd":
        return _ZstdDecoder(src)
    if codec == "br":
        return _BrotliDecoder(src)
    if codec in _STREAM_CODECS:
        return _StreamDecoder(src, codec)
    raise ValueError(f"unknown codec {codec!r}")


class BoundedReader(io.RawIOBase):
    """Raw file over a decoder: enforces the ratio cap, the size cap and, for zip members, the declared size and
    CRC-32 (headers can lie: a member never inflates past the size its header declares).

    Every readinto produces at most the caller's buffer; errors are DecompressionError subclasses.
    """

    def __init__(
        self,
        decoder: Any,
        *,
        codec: str | None,
        max_ratio: float | None,
        max_output: int | None = None,
        declared_size: int | None = None,
        expected_crc: int | None = None,
    ):
        super().__init__()
        self._dec = decoder
        self._codec = codec or "stored"
        self._max_ratio = max_ratio
        self._max_output = max_output
        self._declared = declared_size
        self._expected_crc = expected_crc
        self._crc = 0
        self.out = 0
        caps = [c for c in (max_output, declared_size) if c is not None]
        self._limit = min(caps) if caps else None

    @property
    def consumed(self) -> int:
        return self._dec.consumed

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        """Bytes produced so far (FastWARC asks for the position once; the stream cannot seek)."""
        return self.out

    def readinto(self, b: Any) -> int:
        want = len(b)
        if self._limit is not None:
            want = max(1, min(want, self._limit - self.out + 1))  # one byte over a cap proves the overflow
        data = self._dec.read(want)
        if not data:
            self._at_end()
            return 0
        self.out += len(data)
        if self._declared is not None and self.out > self._declared:
            raise DecompressionBomb(
                f"{self._codec} member inflates past its declared {self._declared} bytes "
                f"(compressed {self.consumed} bytes read)"
            )
        if self._max_output is not None and self.out > self._max_output:
            raise OutputTooLarge(
                f"{self._codec} output exceeds {self._max_output} bytes after {self.consumed} compressed bytes"
            )
        if ratio_exceeded(self.out, self.consumed, self._max_ratio):
            raise DecompressionBomb(bomb_detail(self.out, self.consumed, self._max_ratio, f"{self._codec}: "))
        if self._expected_crc is not None:
            self._crc = zlib.crc32(data, self._crc)
        n = len(data)
        b[:n] = data
        return n

    def _at_end(self) -> None:
        if self._declared is not None and self.out != self._declared:
            raise CorruptStream(
                f"{self._codec} member holds {self.out} bytes, its header declares {self._declared}"
            )
        if self._expected_crc is not None and self._crc != self._expected_crc:
            raise CorruptStream(f"{self._codec} member of {self.out} bytes fails its CRC-32 check")


def open_stream(
    raw: BinaryIO,
    codec: str | None,
    *,
    max_ratio: float | None,
    max_output: int | None = None,
    declared_size: int | None = None,
    expected_crc: int | None = None,
    buffer_size: int = BUFFER_SIZE,
) -> BinaryIO:
    """A buffered, bounded decompressing file over `raw` (readline(limit), peek and read(n) all work).

    Uncompressed input with nothing to check is returned as it is.
    """
    if codec is None and max_output is None and declared_size is None and expected_crc is None:
        return raw
    reader = BoundedReader(
        _decoder(raw, codec),
        codec=codec,
        max_ratio=max_ratio,
        max_output=max_output,
        declared_size=declared_size,
        expected_crc=expected_crc,
    )
    return io.BufferedReader(reader, buffer_size)  # type: ignore[return-value]


def decode_content(
    payload: bytes, content_encoding: str, *, max_output: int, max_ratio: float | None
) -> bytes:
    """Decode an HTTP body by its ``Content-Encoding`` (gzip, x-gzip, deflate zlib-wrapped or raw, br), bounded.

    Crawlers often store the body already decoded but keep the header (ClueWeb09), so gzip is trusted by its magic
    bytes: a gzip body is decoded whatever the header says, a "gzip" body without the magic is kept as it is. A
    body that does not decode is kept as stored; a cut one keeps what decoded. Raises OutputTooLarge (decoded body
    over `max_output`) or DecompressionBomb (ratio cap).
    """
    codings = [c.strip() for c in content_encoding.lower().split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if payload[:2] == GZIP_MAGIC and not codings:
        codings = ["gzip"]
    for coding in reversed(codings):
        codec = _content_codec(coding, payload)
        if codec is None:
            continue
        decoded = _decode_all(payload, codec, max_output=max_output, max_ratio=max_ratio)
        if decoded is None:
            break
        payload = decoded
    return payload


def _content_codec(coding: str, payload: bytes) -> str | None:
    if payload[:2] == GZIP_MAGIC:
        return "gzip"
    if not payload or coding in ("gzip", "x-gzip"):
        return None  # a gzip header on a body stored decoded
    if coding == "deflate":
        # RFC 9110 says zlib-wrapped; many servers send raw deflate. A zlib header is CMF/FLG with CM=8, 31 | CMF*256+FLG.
        zlib_wrapped = (
            len(payload) >= 2 and payload[0] & 0x0F == 8 and (payload[0] << 8 | payload[1]) % 31 == 0
        )
        return "zlib" if zlib_wrapped else "deflate"
    if coding == "br" and brotli_available():
        return "br"
    return None


def _decode_all(payload: bytes, codec: str, *, max_output: int, max_ratio: float | None) -> bytes | None:
    reader = BoundedReader(
        _decoder(io.BytesIO(payload), codec), codec=codec, max_ratio=max_ratio, max_output=max_output
    )
    chunks: list[bytes] = []
    try:
        while True:
            chunk = reader.read(BUFFER_SIZE)
            if not chunk:
                break
            chunks.append(chunk)
    except TruncatedStream:
        # A cut body keeps what decoded (a browser shows a page cut off); raw deflate has no header, so a cut there
        # is as likely a body that was never deflated.
        if codec == "deflate":
            return None
    except CorruptStream:
        return None
    if not chunks:
        return None
    return b"".join(chunks)
