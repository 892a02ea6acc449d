"""Keep credentials out of manifests, reports, logs and error messages.

Storage options are passed to fsspec/s3fs verbatim, so any key that looks like a credential is replaced by
``***`` wherever the config is written down, and the secret *values* are scrubbed from any text we print.
"""

from __future__ import annotations

import re
from typing import Any

_SECRET_KEY = re.compile(r"(secret|password|passwd|token|session|credential|private|^key$|access_key|api_key)", re.I)
MASK = "***"


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact_mapping(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: (MASK if is_secret_key(str(k)) and v not in (None, "") else redact_mapping(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_mapping(v) for v in obj]
    return obj


def secret_values(obj: Any) -> list[str]:
    """Every credential-looking value (at any depth) worth scrubbing from free text."""
    found: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if is_secret_key(str(k)) and isinstance(v, str) and len(v) >= 4:
                found.append(v)
            else:
                found += secret_values(v)
    elif isinstance(obj, list):
        for v in obj:
            found += secret_values(v)
    return found


def scrub(text: str, secrets: list[str]) -> str:
    for s in sorted(set(secrets), key=len, reverse=True):
        if s:
            text = text.replace(s, MASK)
    return text
