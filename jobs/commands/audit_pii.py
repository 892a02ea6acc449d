"""`refinery audit-pii OUTPUT`: scan a committed output for residual PII with detectors independent of the stage.

Why independent: an audit that reuses the scrubber's own regexes can only confirm the scrubber's blind spots. These
detectors are written separately and kept simple: emails, Luhn-valid card numbers, IBANs with a valid mod-97
checksum, and phone-number shapes (grouped, or bare digits with a country code or after a phone word). It reads only the files listed in manifest.json: in the data files, `text` and
every string of the `meta` JSON (URLs also percent-decoded), since both are published; in the quarantine files,
the `raw` input records (decoded as UTF-8 with replacement), reported apart. It reports residual counts per type,
per column, and the ids of the rows where they occur — never the values. Beside them it shows what the run's `pii`
stage found (report.json): counts per entity type and the detectors that found them, so a residual can be read
against what was scrubbed.
Exit code 0 when clean, 3 (alert) when residuals are found in the data or the quarantine, 2 when the output is not
a committed run.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any
from urllib.parse import unquote_plus

from jobs.cli import command
from jobs.errors import EXIT_ALERT, EXIT_CONFIG, EXIT_OK

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_DIGITS = re.compile(r"(?<![\w\-])\d(?:[ \-]?\d){12,18}(?![\w\-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
TYPES = ("EMAIL_ADDRESS", "CREDIT_CARD", "IBAN_CODE", "PHONE_NUMBER")
# The audit's own detector per type (named in its output; independent of the stage's).
AUDIT_DETECTORS = {
    "EMAIL_ADDRESS": "audit_email_regex",
    "CREDIT_CARD": "audit_luhn",
    "IBAN_CODE": "audit_iban_mod97",
    "PHONE_NUMBER": "audit_phone_shape",
}
_PHONE = re.compile(
    r"(?<![\w.])(?:\+\d{1,3}[ .\-]?)?(?:\(\d{2,4}\)[ .\-]?)?\d{2,4}(?:[ .\-]\d{2,4}){2,4}(?![\w])"
)
# Numbers written without separators: with a country code ("+4930123456", "004930123456"), or a bare run of
# digits right after a phone word ("Tel:0612345678", "mobile 0612345678"); a literal \n or \t escape (JSON
# scrapes) glues nothing.
_PHONE_BARE = re.compile(
    r"(?<![\w+])(?:\+|00)[1-9]\d{7,14}(?!\d)"
    r"|(?i:\b(?:phone|tel|telephone|fax|mobile|cell|call|whatsapp)\b[\s.:#\-]{0,4}|\\[nt])0?\d{8,14}(?!\d)"
)


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
    found = dict.fromkeys(TYPES, 0)
    found["EMAIL_ADDRESS"] = len(_EMAIL.findall(text))
    for m in _DIGITS.finditer(text):
        d = re.sub(r"\D", "", m.group())
        if 13 <= len(d) <= 19 and len(set(d)) > 1 and _luhn(d):
            found["CREDIT_CARD"] += 1
    found["IBAN_CODE"] = sum(_iban_valid(m.group()) for m in _IBAN.finditer(text.upper()))
    phone_spans = []
    for m in _PHONE.finditer(text):
        d = re.sub(r"\D", "", m.group())
        if 9 <= len(d) <= 15 and not re.fullmatch(r"(?:19|20)\d\d[-./]\d\d[-./]\d\d.*", m.group()):
            phone_spans.append(m.span())
    for m in _PHONE_BARE.finditer(text):
        if not any(a < m.end() and m.start() < b for a, b in phone_spans):
            phone_spans.append(m.span())
    found["PHONE_NUMBER"] = len(phone_spans)
    return found


def meta_strings(meta: str) -> list[str]:
    """Every string value of a `meta` JSON at any depth (keys too), URLs percent-decoded; the whole string when it
    is not JSON. Its own walk and its own parser (stdlib json), like its detectors."""
    try:
        todo: list[Any] = [json.loads(meta)]
    except (ValueError, RecursionError):
        return [meta]
    out: list[str] = []
    while todo:
        v = todo.pop()
        if isinstance(v, str):
            out.append(unquote_plus(v) if v[:8].lower().startswith(("http://", "https://")) else v)
        elif isinstance(v, dict):
            todo.extend(v.keys())
            todo.extend(v.values())
        elif isinstance(v, list):
            todo.extend(v)
    return out


class _Tally:
    """Residual counts per type and the first row ids per type, for one place (a column, the quarantine)."""

    def __init__(self, max_ids: int) -> None:
        self.max_ids = max_ids
        self.counts = dict.fromkeys(TYPES, 0)
        self.ids: dict[str, list[str]] = {k: [] for k in TYPES}

    def add(self, rid: str, texts: list[str]) -> None:
        for text in texts:
            for k, v in scan_text(text).items():
                if v:
                    self.counts[k] += v
                    if len(self.ids[k]) < self.max_ids and (not self.ids[k] or self.ids[k][-1] != rid):
                        self.ids[k].append(rid)

    def report(self) -> dict[str, Any]:
        return {"residual": self.counts, "row_ids": self.ids, "clean": not any(self.counts.values())}


def audit(
    output_uri: str, storage_options: dict[str, Any] | None = None, max_ids: int = 100
) -> dict[str, Any]:
    """Scan the committed data (`text` and every string of `meta`) and the quarantine's `raw` records.

    `residual`/`row_ids`/`clean` cover the data files (text + meta); `by_column` splits them; `quarantine` is
    reported apart (raw input records, decoded as UTF-8 with replacement)."""
    import pyarrow.parquet as pq

    from refinery.location import Location

    out = Location(output_uri, storage_options)
    if not out.join("_SUCCESS").exists():
        raise FileNotFoundError("output is not committed (no _SUCCESS)")
    manifest = out.join("manifest.json").read_json()
    entries = manifest.get("files", [])
    cols = {"text": _Tally(max_ids), "meta": _Tally(max_ids)}
    quarantine = _Tally(max_ids)
    rows = q_rows = 0
    files = [e for e in entries if e.get("kind") == "data"]
    q_files = [e for e in entries if e.get("kind") == "quarantine"]
    for entry in files + q_files:
        is_data = entry.get("kind") == "data"
        with out.join(entry["path"]).open("rb") as f:
            pf = pq.ParquetFile(f)
            wanted = [c for c in (("text", "meta") if is_data else ("raw",)) if c in pf.schema_arrow.names]
            for batch in pf.iter_batches(columns=["id", *wanted], batch_size=4096):
                ids = batch.column(0).to_pylist()
                if is_data:
                    rows += len(ids)
                else:
                    q_rows += len(ids)
                for j, c in enumerate(wanted, start=1):
                    for rid, value in zip(ids, batch.column(j).to_pylist(), strict=True):
                        if not value:
                            continue
                        if c == "raw":
                            quarantine.add(rid, [value.decode("utf-8", "replace")])
                        else:
                            cols[c].add(rid, [value] if c == "text" else meta_strings(value))
    residual = {k: cols["text"].counts[k] + cols["meta"].counts[k] for k in TYPES}
    report = out.join("report.json").read_json() if out.join("report.json").exists() else {}
    row_ids = {k: list(dict.fromkeys(cols["text"].ids[k] + cols["meta"].ids[k]))[:max_ids] for k in TYPES}
    return {
        "output": output_uri,
        "run_id": manifest.get("run_id"),
        "files": len(files),
        "rows": rows,
        "residual": residual,
        "row_ids": row_ids,
        "clean": not any(residual.values()),
        "by_column": {c: t.report() for c, t in cols.items()},
        "detectors": AUDIT_DETECTORS,
        "scrubbed": stage_findings(report),
        "quarantine": {"files": len(q_files), "rows": q_rows, **quarantine.report()},
    }


def stage_findings(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What the run's `pii` stages found, from report.json: per entity type the count and the detectors that found
    it (``{"PERSON": {"count": 12, "detectors": {"spacy_ner": 10, "name_rules": 2}}}``)."""
    found: dict[str, dict[str, Any]] = {}
    for stage in report.get("stages", []):
        if "pii" not in stage.get("name", ""):
            continue
        for key, v in stage.get("counters", {}).items():
            if key.startswith("by_detector.") and "/" in key:
                etype, det = key[len("by_detector.") :].split("/", 1)
                entry = found.setdefault(etype, {"count": 0, "detectors": {}})
                entry["count"] += int(v)
                entry["detectors"][det] = entry["detectors"].get(det, 0) + int(v)
    return dict(sorted(found.items()))


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument("output", help="committed output root (local path or fsspec URL)")
    p.add_argument("--max-ids", type=int, default=100, help="row ids listed per type (default 100)")
    p.add_argument("--storage-option", action="append", default=[], metavar="key=value")


@command("audit-pii", _args)
def cmd_audit_pii(args: argparse.Namespace) -> int:
    opts = dict(kv.split("=", 1) for kv in args.storage_option)
    try:
        result = audit(args.output, opts, args.max_ids)
    except FileNotFoundError as e:
        print(f"audit-pii: {e}", file=sys.stderr)
        return EXIT_CONFIG
    print(json.dumps(result, indent=2))
    return EXIT_OK if result["clean"] and result["quarantine"]["clean"] else EXIT_ALERT
