"""Audio files (WAV, FLAC, MP3, OGG/Opus, M4A) → one ``audio`` row per file, transcript in ``text``.

Files are read up to ``input.max_record_bytes`` (bigger ones are ``record_too_large``). mutagen reads the stream
headers (duration, sample rate, channels) without decoding the audio; a file mutagen
cannot parse is quarantined as ``undecodable_audio``. Bytes are inline up to ``input.inline_max_bytes``, by URI
above it (``media.uri`` is always set).

Transcripts come from a same-stem sidecar (``clip.txt`` or ``clip.json`` with ``transcript``/``text``), or from a
``transcripts.jsonl`` in the same folder with one ``{"file", "transcript", "lang"}`` object per line (the layout
of ../shared/data/audio/asterisk_en). Both are claimed in ``sidecars()``, so they are never read as documents.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import posixpath
from collections.abc import Iterator
from typing import Any

import orjson
import pyarrow as pa

from refinery.config import InputConfig
from refinery.fsio import InputFile
from refinery.location import Location
from stages.readers import register_reader
from stages.readers.base import (
    Reader,
    ReadTask,
    RowBuilder,
    folder_and_name,
    in_folder,
    split_member,
    stem_and_ext,
)
from stages.readers.image import CAPTION_EXTENSIONS, read_sidecar_caption, same_stem_sidecars

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a")
TRANSCRIPT_KEYS = ("transcript", "text", "caption")
TRANSCRIPTS_FILE = "transcripts.jsonl"
# A folder's transcript list is read whole (cached per folder): bounded, so a hostile one cannot blow memory.
_TRANSCRIPTS_MAX_BYTES = 256 << 20
_MIME = {
    "WAVE": "audio/wav",
    "FLAC": "audio/flac",
    "MP3": "audio/mpeg",
    "EasyMP3": "audio/mpeg",
    "OggVorbis": "audio/ogg",
    "OggOpus": "audio/ogg",
    "OggFLAC": "audio/ogg",
    "OggSpeex": "audio/ogg",
    "MP4": "audio/mp4",
    "EasyMP4": "audio/mp4",
}
_BY_EXTENSION = {
    ".mp3": ("mutagen.mp3", "MP3"),
    ".flac": ("mutagen.flac", "FLAC"),
    ".wav": ("mutagen.wave", "WAVE"),
    ".ogg": ("mutagen.oggvorbis", "OggVorbis"),
    ".oga": ("mutagen.oggvorbis", "OggVorbis"),
    ".opus": ("mutagen.oggopus", "OggOpus"),
    ".m4a": ("mutagen.mp4", "MP4"),
}


@register_reader
class AudioReader(Reader):
    format = "audio"
    extensions = AUDIO_EXTENSIONS

    def __init__(self, cfg: InputConfig, run_id: str = ""):
        super().__init__(cfg, run_id)
        self._member_transcripts: dict[str, dict[str, dict[str, Any]]] = {}

    def sidecars(self, files: list[InputFile]) -> set[str]:
        side = same_stem_sidecars(files, AUDIO_EXTENSIONS, CAPTION_EXTENSIONS)
        audio_dirs = {folder_and_name(f.uri)[0] for f in files if stem_and_ext(f.uri)[1] in AUDIO_EXTENSIONS}
        side |= {
            f.uri
            for f in files
            if folder_and_name(f.uri)[1] == TRANSCRIPTS_FILE and folder_and_name(f.uri)[0] in audio_dirs
        }
        return side

    def read(self, task: ReadTask) -> Iterator[pa.Table]:
        rows = RowBuilder(task, self.cfg, self.run_id)
        data = self.read_document(task, rows)
        if data is None:
            yield rows.flush()  # type: ignore[misc]
            return
        transcript, source = read_sidecar_caption(self, task.uri, TRANSCRIPT_KEYS)
        lang = None
        if transcript is None:
            folder, name = folder_and_name(task.uri)
            entry = self._transcripts(folder).get(name)
            if entry:
                transcript, lang, source = entry.get("transcript"), entry.get("lang"), TRANSCRIPTS_FILE
        meta: dict[str, Any] = {"transcript_lang": lang} if lang else {}
        add_audio_row(
            rows,
            data,
            offset=0,
            inline_max=self.cfg.inline_max_bytes,
            media_uri=task.uri,
            transcript=transcript,
            transcript_source=source,
            meta=meta,
            ext=stem_and_ext(task.uri)[1],
        )
        yield rows.flush()  # type: ignore[misc]

    def _transcripts(self, folder: str) -> dict[str, dict[str, Any]]:
        uri = in_folder(folder, TRANSCRIPTS_FILE)
        if split_member(uri) is None:
            return _load_transcripts(uri, orjson.dumps(self.cfg.storage_options).decode())
        if uri not in self._member_transcripts:  # inside a zip: read once per archive folder
            self._member_transcripts[uri] = _parse_transcripts(self.read_sidecar(uri) or b"")
        return self._member_transcripts[uri]


@functools.lru_cache(maxsize=64)
def _load_transcripts(uri: str, storage_options_json: str) -> dict[str, dict[str, Any]]:
    """file name → entry of a folder's transcripts.jsonl (cached: every clip in the folder asks for it)."""
    loc = Location(uri, orjson.loads(storage_options_json))
    try:
        if not loc.exists():
            return {}
        with loc.open("rb") as f:
            data = f.read(_TRANSCRIPTS_MAX_BYTES)
    except OSError:
        return {}
    return _parse_transcripts(data)


def _parse_transcripts(data: bytes) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for line in data.splitlines():
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("file"), str):
            out[posixpath.basename(obj["file"])] = obj
    return out


def add_audio_row(
    rows: RowBuilder,
    data: bytes,
    *,
    offset: int,
    inline_max: int,
    media_uri: str,
    transcript: str | None,
    transcript_source: str | None,
    meta: dict[str, Any],
    ext: str = "",
) -> None:
    """Probe one audio file and add its row (or a quarantine row saying why it cannot be read)."""
    import mutagen

    if not data:
        rows.quarantine(offset=offset, reason="empty_file", detail="audio file has no bytes")
        return
    try:
        audio = mutagen.File(io.BytesIO(data))
        if audio is None and ext in _BY_EXTENSION:
            # mutagen sniffs by header and file name; without a name, bare MPEG-2.5 frames score zero.
            module, cls = _BY_EXTENSION[ext]
            audio = getattr(importlib.import_module(module), cls)(io.BytesIO(data))
    except Exception as e:  # mutagen raises its own error types per container
        rows.quarantine(
            offset=offset,
            reason="undecodable_audio",
            raw=data,
            detail=f"{type(e).__name__} from mutagen on {len(data)} bytes",
        )
        return
    info = getattr(audio, "info", None)
    duration = getattr(info, "length", None)
    if audio is None or info is None or not duration or duration <= 0:
        rows.quarantine(
            offset=offset,
            reason="undecodable_audio",
            raw=data,
            detail=f"no audio stream found in {len(data)} bytes",
        )
        return
    kind = type(audio).__name__
    media = {
        "bytes": data if len(data) <= inline_max else None,
        "uri": media_uri,
        "mime": _MIME.get(kind, (audio.mime[0] if getattr(audio, "mime", None) else None)),
        "duration_s": float(duration),
        "sample_rate": int(getattr(info, "sample_rate", 0) or 0) or None,
        "channels": int(getattr(info, "channels", 0) or 0) or None,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    m = dict(meta)
    m["bytes"] = len(data)
    if transcript and transcript_source:
        m["transcript_source"] = transcript_source
    text = transcript.strip() if isinstance(transcript, str) and transcript.strip() else None
    rows.add(offset=offset, text=text, modality="audio", media=media, meta=orjson.dumps(m).decode())
