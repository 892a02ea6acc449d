"""Keep credentials out of manifests, reports, logs and error messages.

Storage options are passed to fsspec/s3fs verbatim, so any key that looks like a credential is replaced by
``***`` wherever the config is written down, and the secret *values* are scrubbed from any text we print.
"""

from __future__ import annotations

import re
from typing import Any

_SECRET_KEY = re.compile(
    r"(secret|password|passwd|token|session|credential|private|^key$|access_key|api_key)", re.I
)
MASK = "***"


# user:password@ inside a URL ("s3://KEY:SECRET@bucket/…", "https://user:pw@host/…")
_URI_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#@\s]+)@")


def redact_uri(text: str) -> str:
    """Mask the user-info part of every URL in `text`; a credential inside a URI is still a credential."""
    if "@" not in text:
        return text
    return _URI_USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", text)


def uri_has_userinfo(uri: str) -> bool:
    return bool(_URI_USERINFO.match(uri.strip()))


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact_mapping(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {
            k: (MASK if is_secret_key(str(k)) and v not in (None, "") else redact_mapping(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [redact_mapping(v) for v in obj]
    if isinstance(obj, str):
        return redact_uri(obj)
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
    """Remove credential values and URL user-info from free text (errors, logs)."""
    for s in sorted(set(secrets), key=len, reverse=True):
        if s:
            text = text.replace(s, MASK)
    return redact_uri(text)
