"""Review samples of a filter's decisions, export them for labelling, and score filters against the labels.

`refinery sample OUTPUT --stage S [--reason R] [--kept] -n N --format jsonl|labelstudio` takes, deterministically
(by a hash of stage and id), documents stage S flagged (with reason R) or, with `--kept`, documents it let
through, from the committed data of OUTPUT. The text is PII-scrubbed (the `pii` stage's validated patterns) and
truncated; the signals that decided (the stage's `quality` children) go with it. Documents a stage *dropped* are
not in the output (the drop log holds no text): run the stage with `action: annotate` to review its drops.

`refinery labels import FILE --out DIR` turns a Label Studio export (or JSON Lines of {id, label}) into
`DIR/labels.jsonl` ({id, text, label, stage, reason, signals}), the labelled dataset a classifier trainer reads.
`refinery labels eval FILE OUTPUT` reports, per stage, precision and recall of its drop verdicts against the
human labels (`drop` is the positive class).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.commit import committed_manifest
from refinery.config import ConfigError
from refinery.location import Location
from refinery.schema import FLAGGED_COL

MAX_CHARS = 2000
LABELS = ("keep", "drop")


def _files(output: str, so: dict[str, Any], kind: str = "data") -> list[str]:
    manifest = committed_manifest(output, so)
    if manifest is None:
        raise ConfigError(output, [("OUTPUT", "not a committed refinery output (no _SUCCESS)")])
    return [f["path"] for f in manifest["files"] if f["kind"] == kind]


def _read(output: str, so: dict[str, Any], path: str, columns: list[str] | None = None) -> pa.Table:
    """One committed file; with `columns`, only those of them it has (on S3 only their byte ranges are read)."""
    with Location(output, so).join(path).open("rb") as fh:
        if columns is None:
            return pq.read_table(fh)
        pf = pq.ParquetFile(fh)
        return pf.read(columns=[c for c in columns if c in pf.schema_arrow.names])


def _tables(output: str, so: dict[str, Any], kind: str = "data") -> Iterator[pa.Table]:
    for path in _files(output, so, kind):
        yield _read(output, so, path)


def stage_signals(output: str, so: dict[str, Any], stage: str) -> list[str]:
    """The `quality` children the stage wrote (its decision's inputs), from the source config."""
    from refinery.stage import build_stage

    manifest = committed_manifest(output, so) or {}
    for spec in manifest.get("config", {}).get("stages", []):
        if spec["stage"] == stage.split("#")[0]:
            st = build_stage(spec["stage"], spec.get("params") or {})
            return [
                c.name
                for f in st.output_fields()
                if f.name == "quality" and pa.types.is_struct(f.type)
                for c in f.type
            ]
    raise ConfigError("--stage", [("--stage", f"the output's config runs no stage {stage!r}")])


def select(
    output: str,
    stage: str,
    n: int,
    reason: str | None = None,
    kept: bool = False,
    so: dict[str, Any] | None = None,
    max_chars: int = MAX_CHARS,
) -> list[dict[str, Any]]:
    """Up to `n` samples, the same ones every time, scrubbed and truncated, with their signals."""
    so = so or {}
    names = stage_signals(output, so, stage)
    pool: list[tuple[str, int, int, dict[str, Any]]] = []  # (sort key, part, row, sample)
    for part, t in enumerate(_tables(output, so)):
        flags = t[FLAGGED_COL].to_pylist() if FLAGGED_COL in t.column_names else [None] * t.num_rows
        quality = t["quality"].to_pylist() if "quality" in t.column_names else [None] * t.num_rows
        langs = t["lang"].to_pylist() if "lang" in t.column_names else [None] * t.num_rows
        for i, (rid, fl) in enumerate(zip(t["id"].to_pylist(), flags, strict=True)):
            mine = [f.split(":", 1)[1] for f in fl or [] if f.split(":", 1)[0] == stage]
            if kept == bool(mine) or (reason and not kept and reason not in mine):
                continue
            row = {
                "id": rid,
                "stage": stage,
                "decision": "keep" if kept else "drop",
                "reason": None if kept else (reason or mine[0]),
                "lang": langs[i],
                "signals": {k: (quality[i] or {}).get(k) for k in names},
            }
            pool.append((hashlib.sha256(f"{stage}\x00{rid}".encode()).hexdigest(), part, i, row))
        pool.sort(key=lambda x: x[0])
        del pool[n:]  # memory bounded by n
    wanted: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for _, part, i, row in pool:
        wanted.setdefault(part, []).append((i, row))
    for part, t in enumerate(_tables(output, so)):
        for i, row in wanted.get(part, []):
            row["text"] = t["text"][i].as_py()
    if not pool:
        dropped = sum(
            int(pc.sum(pc.equal(d["stage"], stage)).as_py() or 0) for d in _tables(output, so, "droplog")
        )
        hint = (
            f"; it dropped {dropped} document(s), whose text the output does not keep: run it with "
            "action: annotate to review them"
            if dropped and not kept
            else ""
        )
        raise ConfigError("--stage", [("--stage", f"no document to sample for {stage!r}{hint}")])
    samples = [row for _, _, _, row in pool]
    scrubbed = scrub([r.get("text") for r in samples])
    for r, text in zip(samples, scrubbed, strict=True):
        r["text"] = (text or "")[:max_chars]
        r["truncated"] = len(text or "") > max_chars
    return samples


def scrub(texts: list[str | None]) -> list[str | None]:
    """PII out of sample texts: the `pii` stage's validated patterns (no model), typed placeholders."""
    from stages.pii.scrub import Pii

    return Pii.patterns_only({}).scrub_texts(texts)


def labelstudio(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Label Studio's task import format: one task per sample, the signals as data fields."""
    tasks = []
    for s in samples:
        data = {k: s[k] for k in ("id", "text", "stage", "decision", "reason", "lang")}
        data.update({f"signal_{k}": v for k, v in s["signals"].items()})
        tasks.append({"data": data})
    return tasks


def read_labels(path: str, so: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Labels from a Label Studio export (tasks with `annotations`, choice keep|drop) or JSON Lines
    {id, label, ...}. Every label must be keep or drop."""
    body = Location(path, so).read_bytes().decode("utf-8")
    errors: list[tuple[str, str]] = []
    out: list[dict[str, Any]] = []
    stripped = body.lstrip()
    if stripped.startswith("["):
        for n, task in enumerate(json.loads(body)):
            data = task.get("data", {})
            choices = [
                c
                for a in task.get("annotations", [])
                for r in a.get("result", [])
                for c in r.get("value", {}).get("choices", [])
            ]
            if not choices:
                continue  # not labelled yet
            out.append({**data, "label": choices[-1]})
            if choices[-1] not in LABELS:
                errors.append((f"task {n}", f"label must be one of {LABELS}"))
    else:
        for n, line in enumerate(body.splitlines(), 1):
            if line.strip():
                rec = json.loads(line)
                if rec.get("label") not in LABELS or "id" not in rec:
                    errors.append((f"line {n}", f"expected id and a label of {LABELS}"))
                out.append(rec)
    if errors:
        raise ConfigError(path, errors)
    return out


def import_labels(path: str, out_dir: str, so: dict[str, Any] | None = None) -> int:
    """`DIR/labels.jsonl`: {id, text, label, stage, reason, signals} per labelled sample."""
    rows = []
    for r in read_labels(path, so):
        signals = {k[len("signal_") :]: v for k, v in r.items() if k.startswith("signal_")}
        signals.update(r.get("signals", {}))
        rows.append(
            {
                "id": r["id"],
                "text": r.get("text"),
                "label": r["label"],
                "stage": r.get("stage"),
                "reason": r.get("reason"),
                "signals": signals,
            }
        )
    body = "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in rows)
    Location(out_dir, so).join("labels.jsonl").write_bytes(body.encode())
    return len(rows)


def evaluate(path: str, output: str, so: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Per stage: precision and recall of its drop verdicts (flagged or dropped) against the human labels."""
    so = so or {}
    labels = {r["id"]: r["label"] for r in read_labels(path, so)}
    verdict: dict[str, set[str]] = {}  # stage → ids it would drop
    seen: set[str] = set()
    for t in _tables(output, so):
        flags = t[FLAGGED_COL].to_pylist() if FLAGGED_COL in t.column_names else [None] * t.num_rows
        for rid, fl in zip(t["id"].to_pylist(), flags, strict=True):
            if rid in labels:
                seen.add(rid)
                for f in fl or []:
                    verdict.setdefault(f.split(":", 1)[0], set()).add(rid)
    for d in _tables(output, so, "droplog"):
        for rid, st in zip(d["id"].to_pylist(), d["stage"].to_pylist(), strict=True):
            if rid in labels:
                seen.add(rid)
                verdict.setdefault(st, set()).add(rid)
    manifest = committed_manifest(output, so) or {}
    from jobs.plan import stage_labels

    stages = stage_labels([s["stage"] for s in manifest.get("config", {}).get("stages", [])])
    truth = {i for i in seen if labels[i] == "drop"}
    report = {}
    for st in stages:
        pred = verdict.get(st, set())
        tp = len(pred & truth)
        report[st] = {
            "labelled": len(seen),
            "predicted_drop": len(pred),
            "labelled_drop": len(truth),
            "precision": round(tp / len(pred), 4) if pred else None,
            "recall": round(tp / len(truth), 4) if truth else None,
        }
    return report


def report_samples(
    output: str, so: dict[str, Any] | None = None, per_reason: int = 3, max_chars: int = 400
) -> dict[str, Any]:
    """The review section of report.html: per stage and reason the `per_reason` flagged documents with the
    smallest hash of stage and id, scrubbed and truncated, with their signals; and per filter the number of
    documents it dropped, whose text is not kept.

    Two passes, because text is most of an output's bytes and only a few rows per reason are shown: the first
    reads only flags and ids of every file, the second text and signals of the files that hold a picked row."""
    so = so or {}
    files = _files(output, so)
    candidates: dict[tuple[str, str], list[tuple[str, int, int, Any]]] = {}
    for n, path in enumerate(files):
        t = _read(output, so, path, [FLAGGED_COL, "id"])
        if FLAGGED_COL not in t.column_names:
            continue
        ids = t["id"].to_pylist()
        for i, fl in enumerate(t[FLAGGED_COL].to_pylist()):
            for f in fl or []:
                stage, _, reason = f.partition(":")
                key = hashlib.sha256(f"{stage}\x00{ids[i]}".encode()).hexdigest()
                bucket = candidates.setdefault((stage, reason), [])
                if len(bucket) < per_reason or key < bucket[-1][0]:
                    bucket.append((key, n, i, ids[i]))
                    bucket.sort(key=lambda x: x[0])
                    del bucket[per_reason:]
    wanted = sorted({(n, i) for bucket in candidates.values() for _, n, i, _ in bucket})
    found: dict[tuple[int, int], tuple[str, dict[str, Any]]] = {}
    for n in sorted({n for n, _ in wanted}):
        t = _read(output, so, files[n], ["text", "quality"])
        rows_here = [i for m, i in wanted if m == n]
        texts = t["text"].take(rows_here).to_pylist()
        qualities = t["quality"].take(rows_here).to_pylist() if "quality" in t.column_names else []
        for k, i in enumerate(rows_here):
            found[(n, i)] = (texts[k] or "", (qualities[k] if qualities else None) or {})
    names: dict[str, list[str]] = {}
    picked: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
    for (stage, reason), bucket in candidates.items():
        if stage not in names:
            try:
                names[stage] = stage_signals(output, so, stage)
            except ConfigError:
                names[stage] = []
        for key, n, i, doc_id in bucket:
            text, quality = found[(n, i)]
            sig = {k: quality.get(k) for k in names[stage]}
            row = {"id": doc_id, "signals": sig, "text": text[: max_chars * 2]}
            picked.setdefault((stage, reason), []).append((key, row))
    rows = [r for bucket in picked.values() for _, r in bucket]
    for r, text in zip(rows, scrub([r["text"] for r in rows]), strict=True):
        r["text"] = (text or "")[:max_chars] + ("…" if len(text or "") > max_chars else "")
    stages: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for (stage, reason), bucket in sorted(picked.items()):
        stages.setdefault(stage, {})[reason] = [r for _, r in bucket]
    report = Location(output, so).join("report.json").read_json_or_none() or {}
    no_text = {
        s["name"]: sum(s["dropped"].values())
        for s in report.get("stages", [])
        if sum(s.get("dropped", {}).values()) and not s["name"].split("#")[0].endswith("_dedup")
    }
    return {"stages": stages, "no_text": no_text}
