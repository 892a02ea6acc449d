"""Reading JSONL.gz from a local S3 server vs. the same files on local disk, in the same run, on one core.

    .venv/bin/python -m scripts.bench.s3 [--copies 8] [--repeat 3] [--md docs/benchmarks/s3.md]

The files are real sentences (../shared/data/langid/lingua_sentences_dev.jsonl.gz, 37k records), written as
`--copies` gzip files (each copy with distinct ids). Each round reads every file once from disk and once from a
SeaweedFS S3 server on 127.0.0.1 (started here, stopped at the end) through the project's own read path
(`JsonlReader.read`: fsspec open → gzip → parse → Arrow batches), alternating which goes first. One process, one
reader thread: figures are per core. The S3 server runs on the same machine and competes for the same cores, so the
ratio is a pessimistic bound for a real S3 endpoint.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from scripts.bench.common import SHARED

SRC = SHARED / "langid" / "lingua_sentences_dev.jsonl.gz"


def make_files(dst: Path, copies: int) -> list[Path]:
    lines = gzip.decompress(SRC.read_bytes()).splitlines()
    out = []
    for c in range(copies):
        body = b"".join(
            json.dumps({"id": f"c{c}-{i}", **json.loads(line)}, ensure_ascii=False).encode() + b"\n"
            for i, line in enumerate(lines)
        )
        p = dst / f"part-{c:03d}.jsonl.gz"
        p.write_bytes(gzip.compress(body, compresslevel=6, mtime=0))
        out.append(p)
    return out


def read_all(uris: list[str], storage_options: dict) -> tuple[int, float]:
    from refinery.config import InputConfig
    from stages.readers.base import ReadTask
    from stages.readers.jsonl import JsonlReader

    cfg = InputConfig(uri="x", format="jsonl", id_field="id", storage_options=storage_options)
    reader = JsonlReader(cfg, "bench")
    rows = 0
    t0 = time.perf_counter()
    for u in uris:
        for batch in reader.read(ReadTask(uri=u, format="jsonl", size=0)):
            rows += batch.num_rows
    return rows, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.bench.s3")
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--md", default=None, help="append a results section to this markdown file")
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from tests.s3_server import SeaweedS3

    work = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    srv = None
    try:
        (work / "local").mkdir()
        files = make_files(work / "local", args.copies)
        total_bytes = sum(f.stat().st_size for f in files)
        srv = SeaweedS3(work / "s3").start()
        fs = srv.fs("admin")
        for f in files:
            fs.put_file(str(f), f"{srv.in_bucket}/bench/{f.name}")
        local = [str(f) for f in files]
        remote = [f"s3://{srv.in_bucket}/bench/{f.name}" for f in files]
        so = srv.options("reader")
        read_all(remote[:1], so)  # warm-up: connection pool, imports
        read_all(local[:1], {})
        res = {"local": [], "s3": []}
        for r in range(args.repeat):
            order = [("local", local, {}), ("s3", remote, so)]
            if r % 2:
                order.reverse()
            for name, uris, opts in order:
                rows, secs = read_all(uris, opts)
                res[name].append((rows, secs))
        best = {k: min(s for _, s in v) for k, v in res.items()}
        rows = res["local"][0][0]
        assert all(n == rows for v in res.values() for n, _ in v), "S3 and disk read different row counts"
        ratio = best["local"] / best["s3"]
        lines = [
            f"## Reading JSONL.gz: local S3 (SeaweedFS) vs local disk, one core ({dt.date.today().isoformat()})",
            "",
            f"Command: `.venv/bin/python -m scripts.bench.s3 --copies {args.copies} --repeat {args.repeat}`  ",
            f"Machine: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), shared with other "
            f"jobs (load average at start {os.getloadavg()[0]:.1f}); the S3 server runs on the same cores.  ",
            f"Data: {len(files)} gzip JSONL files, {rows:,} records, {total_bytes / 1e6:.1f} MB compressed "
            f"(real sentences from lingua's test data, copied with distinct ids). Best of {args.repeat} rounds, "
            "alternating order; project read path (`JsonlReader.read`).",
            "",
            "| source | records/s | compressed MB/s | seconds (best) | all rounds (s) |",
            "|---|---|---|---|---|",
        ]
        for name in ("local", "s3"):
            secs = best[name]
            lines.append(
                f"| {'local disk' if name == 'local' else 'S3 (127.0.0.1)'} | {rows / secs:,.0f} | "
                f"{total_bytes / 1e6 / secs:.1f} | {secs:.2f} | "
                f"{', '.join(f'{s:.2f}' for _, s in res[name])} |"
            )
        lines += ["", f"**S3 / disk throughput: {ratio:.0%}** (target ≥ 50%).", ""]
        text = "\n".join(lines)
        print(text)
        if args.md:
            p = Path(args.md)
            p.parent.mkdir(parents=True, exist_ok=True)
            with p.open("a") as fh:
                fh.write(text + "\n")
        return 0
    finally:
        if srv is not None:
            srv.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
