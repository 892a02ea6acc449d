"""`refinery audit-pii OUTPUT`: scan a committed output for residual PII with detectors independent of the stage.

Why independent: an audit that reuses the scrubber's own regexes can only confirm the scrubber's blind spots. These
detectors are written separately and kept simple: emails, Luhn-valid card numbers, IBANs with a valid mod-97
checksum, and phone-number shapes. It reads only the data files listed in manifest.json (what downstream readers
trust), reports residual counts per type and the ids of the rows where they occur — never the values.
Exit code 0 when clean, 3 (alert) when residuals are found, 2 when the output is not a committed run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_DIGITS = re.compile(r"(?<![\w\-])\d(?:[ \-]?\d){12,18}(?![\w\-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
_PHONE = re.compile(r"(?<![\w.])(?:\+\d{1,3}[ .\-]?)?(?:\(\d{2,4}\)[ .\-]?)?\d{2,4}(?:[ .\-]\d{2,4}){2,4}(?![\w])")


def _luhn(d: str) -> bool:
    s = 0
    for i, c in enumerate(d[::-1]):
        v = int(c) * (2 if i % 2 else 1)
        s += v - 9 if v > 9 else v
    return s % 10 == 0


def _iban_valid(v: str) -> bool:
    v = v.replace(" ", "")
    if len(v) < 15:
        return False
    r = v[4:] + v[:4]
    return int("".join(str(int(c, 36)) for c in r)) % 97 == 1


def scan_text(text: str) -> dict[str, int]:
    """Residual counts per type in one text (values are never returned)."""
    found = {"EMAIL_ADDRESS": 0, "CREDIT_CARD": 0, "IBAN_CODE": 0, "PHONE_NUMBER": 0}
    found["EMAIL_ADDRESS"] = len(_EMAIL.findall(text))
    for m in _DIGITS.finditer(text):
        d = re.sub(r"\D", "", m.group())
        if 13 <= len(d) <= 19 and len(set(d)) > 1 and _luhn(d):
            found["CREDIT_CARD"] += 1
    found["IBAN_CODE"] = sum(_iban_valid(m.group()) for m in _IBAN.finditer(text.upper()))
    for m in _PHONE.finditer(text):
        d = re.sub(r"\D", "", m.group())
        if 9 <= len(d) <= 15 and not re.fullmatch(r"(?:19|20)\d\d[-./]\d\d[-./]\d\d.*", m.group()):
            found["PHONE_NUMBER"] += 1
    return found


def audit(output_uri: str, storage_options: dict[str, Any] | None = None, max_ids: int = 100) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from refinery.fsio import get_fs, join

    fs, root = get_fs(output_uri, storage_options or {})
    if not fs.exists(join(root, "_SUCCESS")):
        raise FileNotFoundError("output is not committed (no _SUCCESS)")
    with fs.open(join(root, "manifest.json"), "rb") as f:
        manifest = json.load(f)
    counts = {"EMAIL_ADDRESS": 0, "CREDIT_CARD": 0, "IBAN_CODE": 0, "PHONE_NUMBER": 0}
    ids: dict[str, list[str]] = {k: [] for k in counts}
    rows = 0
    files = [e for e in manifest.get("files", []) if e.get("kind") == "data"]
    for entry in files:
        with fs.open(join(root, entry["path"]), "rb") as f:
            pf = pq.ParquetFile(f)
            for batch in pf.iter_batches(columns=["id", "text"], batch_size=4096):
                for rid, text in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
                    rows += 1
                    if not text:
                        continue
                    for k, v in scan_text(text).items():
                        if v:
                            counts[k] += v
                            if len(ids[k]) < max_ids:
                                ids[k].append(rid)
    return {"output": output_uri, "run_id": manifest.get("run_id"), "files": len(files), "rows": rows,
            "residual": counts, "row_ids": ids, "clean": not any(counts.values())}


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("output", help="committed output root (local path or fsspec URL)")
    p.add_argument("--max-ids", type=int, default=100, help="row ids listed per type (default 100)")
    p.add_argument("--storage-option", action="append", default=[], metavar="key=value")


def _register() -> None:
    from jobs.cli import EXIT_ALERT, EXIT_CONFIG, EXIT_OK, command

    @command("audit-pii", _args)
    def cmd_audit_pii(args: argparse.Namespace) -> int:
        opts = dict(kv.split("=", 1) for kv in args.storage_option)
        try:
            result = audit(args.output, opts, args.max_ids)
        except FileNotFoundError as e:
            print(f"audit-pii: {e}", file=sys.stderr)
            return EXIT_CONFIG
        print(json.dumps(result, indent=2))
        return EXIT_OK if result["clean"] else EXIT_ALERT


_register()
