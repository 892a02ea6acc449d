"""Image files (JPEG, PNG, GIF, TIFF, WebP, BMP) → one ``image`` row per file, caption in ``text``.

Files are read up to ``input.max_record_bytes`` (bigger ones are ``record_too_large``, never loaded whole). Pillow
decodes the whole image (a truncated or corrupt file is quarantined as ``undecodable_image``, a pixel
decompression bomb as ``image_too_large``); the row gets width, height, mime, sha256 of the file bytes and a
64-bit difference hash (dHash) as a perceptual hash. Bytes are inline in ``media.bytes`` when the file is at most
``input.inline_max_bytes``, otherwise only ``media.uri`` points at it (``media.uri`` is always set).

Captions come from a sidecar with the same stem: ``photo.txt`` (the whole text) or ``photo.json`` (its
``caption``/``text``/``alt``/``description`` field). Sidecars are claimed in ``sidecars()`` so the text and JSONL
readers never read them as documents.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa

from refinery.config import InputConfig
from refinery.fsio import InputFile
from stages.readers import register_reader
from stages.readers.base import Reader, ReadTask, RowBuilder, stem_and_ext, with_extension

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff", ".webp", ".bmp")
CAPTION_EXTENSIONS = (".txt", ".json")
CAPTION_KEYS = ("caption", "text", "alt", "description", "title")
_MIME = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "MPO": "image/jpeg",
}


@register_reader
class ImageReader(Reader):
    format = "image"
    extensions = IMAGE_EXTENSIONS

    def sidecars(self, files: list[InputFile]) -> set[str]:
        return same_stem_sidecars(files, IMAGE_EXTENSIONS, CAPTION_EXTENSIONS)

    def read(self, task: ReadTask) -> Iterator[pa.Table]:
        rows = RowBuilder(task, self.cfg, self.run_id)
        data = self.read_document(task, rows)
        if data is not None:
            caption, source = read_sidecar_caption(self, task.uri, CAPTION_KEYS)
            add_image_row(
                rows,
                data,
                offset=0,
                cfg=self.cfg,
                media_uri=task.uri,
                caption=caption,
                caption_source=source,
                meta={},
            )
        yield rows.flush()  # type: ignore[misc]


def add_image_row(
    rows: RowBuilder,
    data: bytes,
    *,
    offset: int,
    cfg: InputConfig,
    media_uri: str,
    caption: str | None,
    caption_source: str | None,
    meta: dict[str, Any],
) -> None:
    """Decode one image and add its row (or a quarantine row saying why it cannot be decoded)."""
    from PIL import Image

    if not data:
        rows.quarantine(offset=offset, reason="empty_file", detail="image has no bytes")
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                fmt = img.format or ""
                width, height = img.size
                img.load()
                phash = dhash(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        rows.quarantine(
            offset=offset, reason="image_too_large", detail=f"{type(e).__name__}: pixel count over limit"
        )
        return
    except Exception as e:  # PIL raises many types for bad files (OSError, SyntaxError, ValueError …)
        rows.quarantine(
            offset=offset,
            reason="undecodable_image",
            raw=data,
            detail=f"{type(e).__name__} from Pillow on {len(data)} bytes",
        )
        return
    media = {
        "bytes": data if len(data) <= cfg.inline_max_bytes else None,
        "uri": media_uri,
        "mime": _MIME.get(fmt, f"image/{fmt.lower()}" if fmt else None),
        "width": width,
        "height": height,
        "sha256": hashlib.sha256(data).hexdigest(),
        "phash": phash,
    }
    m = dict(meta)
    m["bytes"] = len(data)
    if caption_source and caption:
        m["caption_source"] = caption_source
    rows.add(offset=offset, text=caption, modality="image", media=media, meta=orjson.dumps(m).decode())


def dhash(img, size: int = 8) -> str:
    """64-bit difference hash (hex): robust to resizing/recompression, for near-duplicate images."""
    from PIL import Image

    small = img.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS)
    px = small.tobytes()  # mode L: one byte per pixel, row-major
    bits = 0
    for row in range(size):
        for col in range(size):
            left = px[row * (size + 1) + col]
            right = px[row * (size + 1) + col + 1]
            bits = (bits << 1) | (left > right)
    return f"{bits:0{size * size // 4}x}"


def same_stem_sidecars(
    files: list[InputFile], media_exts: tuple[str, ...], sidecar_exts: tuple[str, ...]
) -> set[str]:
    """URIs of `stem.<sidecar ext>` files that sit next to a `stem.<media ext>` file (or member, in an archive)."""
    by_stem: dict[str, list[str]] = {}
    media_stems: set[str] = set()
    for f in files:
        stem, ext = stem_and_ext(f.uri)
        if ext in media_exts:
            media_stems.add(stem)
        elif ext in sidecar_exts:
            by_stem.setdefault(stem, []).append(f.uri)
    return {uri for stem in media_stems for uri in by_stem.get(stem, [])}


def read_sidecar_caption(reader: Reader, uri: str, keys: tuple[str, ...]) -> tuple[str | None, str | None]:
    """(text, "sidecar_txt"|"sidecar_json") from `stem.txt` / `stem.json` next to `uri`, else (None, None)."""
    for ext, kind in ((".txt", "sidecar_txt"), (".json", "sidecar_json")):
        raw = reader.read_sidecar(with_extension(uri, ext))
        if raw is None:
            continue
        text = raw.decode("utf-8", errors="replace")
        if ext == ".json":
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            text = next((obj[k] for k in keys if isinstance(obj, dict) and isinstance(obj.get(k), str)), "")
        text = text.strip()
        if text:
            return text, kind
    return None, None
