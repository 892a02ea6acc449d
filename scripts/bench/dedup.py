"""Speed and memory of `fuzzy_dedup` vs datatrove's 4-step MinHash pipeline, side by side, at 1×, 4×, 16×.

Both systems get the same documents (scripts/data/make_corpus.py, JSONL.gz parts) and the same parameters (word
5-grams, 14 bands × 8 rows). Each run is a separate process; a sampler thread here records every 0.5 s:
  driver RSS      the driver process alone (ours: the `python -m jobs.run` process; datatrove: its main process)
  total RSS       the driver and all its descendants (Ray's raylet, GCS, workers; datatrove's worker processes)
  state bytes     size of the intermediates on disk, sampled every 2 s (deleted at commit): ours, the whole
                  <output>/_work/<run> (checkpoint and output parts included) and the dedup stage's own scratch
                  <output>/_work/<run>/seg*-fuzzy_dedup (beyond its input checkpoint); datatrove: sigs/ +
                  buckets/ + remove/; and our persisted index generation (the state a nightly run keeps), all
                  per document.
Ours runs the full pipeline (read JSONL → checkpoint → fuzzy_dedup → write Parquet → commit); the report's stage
seconds isolate the dedup itself. datatrove runs signatures (reads JSONL), buckets (14 tasks), cluster (1 task),
filter (re-reads JSONL, writes JSONL).

    python -m scripts.bench.dedup [--base-docs 5000] [--scales 1,4,16] [--workers 2] [--out docs/benchmarks/dedup.md]
    python -m scripts.bench.dedup --base-docs 62500 --scales 16     # 1M documents (~2.3 GB of text)
    python -m scripts.bench.dedup --kernel                           # signature kernel only, vs datatrove
    python -m scripts.bench.dedup --scratch [--base-docs 20000]      # scratch and shuffle bytes per document

`--scratch` runs `fuzzy_dedup`'s steps in this process (no Ray: a sequential stand-in for the backend runs the
very same step functions) on the generated corpus written as one Parquet checkpoint, and reports, per document:
the peak size of the stage's scratch folder (`ctx.work`, beyond its input checkpoint; sampled after every step
and every task), the bytes each scratch step wrote (the shuffle traffic: every byte written there is read back
once by another task), and the checkpoint itself for scale. datatrove keeps about 1 kB/doc (signatures and
buckets), measured by the full benchmark above.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from scripts.bench.common import (
    ROOT,
    SHARED,
    datatrove_minhash,
    datatrove_times,
    make_corpus,
    write_page,
)


class Sampler(threading.Thread):
    """Peak RSS of a process (driver) and of its whole tree, plus the peak size of some folders."""

    def __init__(self, pid: int, folders: list[Path], period: float = 0.5, scratch: str | None = None):
        super().__init__(daemon=True)
        self.pid, self.folders, self.period = pid, folders, period
        self.scratch = scratch  # a glob (under the first folder) of the dedup stage's own scratch folder
        self.driver_peak = self.total_peak = self.disk_peak = self.scratch_peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            try:
                p = psutil.Process(self.pid)
                procs = [p, *p.children(recursive=True)]
                drv = p.memory_info().rss
                tot = 0
                for q in procs:
                    try:
                        tot += q.memory_info().rss
                    except psutil.Error:
                        pass
                self.driver_peak = max(self.driver_peak, drv)
                self.total_peak = max(self.total_peak, tot)
            except psutil.Error:
                pass
            if n % 4 == 0:  # disk usage every 2 s
                self.disk_peak = max(self.disk_peak, sum(_du(f) for f in self.folders))
                if self.scratch and self.folders:
                    own = sum(_du(f) for f in self.folders[0].glob(self.scratch))
                    self.scratch_peak = max(self.scratch_peak, own)
            n += 1
            self.stop.wait(self.period)


def _du(path: Path) -> int:
    total = 0
    if not path.exists():
        return 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def _watch(
    cmd: list[str], folders: list[Path], env: dict, cwd: Path, scratch: str | None = None
) -> tuple[subprocess.CompletedProcess, Sampler, float]:
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    s = Sampler(proc.pid, folders, scratch=scratch)
    s.start()
    out, err = proc.communicate()
    wall = time.time() - t0
    s.stop.set()
    s.join()
    cp = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{err[-4000:]}")
    return cp, s, wall


def run_ours(corpus: Path, work: Path, num_cpus: int) -> dict:
    import yaml

    out = work / "ours-out"
    shutil.rmtree(out, ignore_errors=True)
    cfg = {
        "name": "bench-dedup",
        "input": {"uri": str(corpus), "format": "jsonl", "exclude": ["ground_truth*", "corpus.json"]},
        "output": {"uri": str(out)},
        "ray": {"num_cpus": num_cpus},
        "stages": [{"stage": "fuzzy_dedup", "params": {}}],
    }
    cfg_path = work / "ours.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    _, s, wall = _watch(
        [sys.executable, "-m", "jobs.run", "--config", str(cfg_path)],
        [out / "_work"],
        env,
        ROOT,
        scratch="*/seg*-fuzzy_dedup",  # the stage's ctx.work: its scratch beyond the input checkpoint
    )
    report = json.loads((out / "report.json").read_text())
    st = report["stages"][0]
    index = _du(out / "_state")
    return {
        "wall": wall,
        "stage_seconds": st["seconds"],
        "driver_peak": s.driver_peak,
        "total_peak": s.total_peak,
        "work_peak": s.disk_peak,
        "scratch_peak": s.scratch_peak,
        "index_bytes": index,
        "rows_in": st["rows_in"],
        "rows_out": st["rows_out"],
    }


def run_datatrove(corpus: Path, work: Path, workers: int) -> dict:
    cmd, env, dt_work = datatrove_minhash(corpus, "part-*.jsonl.gz", work, 5, 14, 8, workers)
    folders = [dt_work / "sigs", dt_work / "buckets", dt_work / "remove"]
    cp, s, wall = _watch(cmd, folders, env, dt_work)
    times = datatrove_times(cp.stdout)
    rows_out = 0
    for f in (dt_work / "out").glob("*.jsonl*"):
        with open(f, "rb") as fh:
            rows_out += sum(1 for _ in fh)
    return {
        "wall": wall,
        "steps": times,
        "driver_peak": s.driver_peak,
        "total_peak": s.total_peak,
        "work_peak": s.disk_peak,
        "rows_out": rows_out,
    }


def kernel(reps: int = 2) -> None:
    """Signature kernel alone, in this process, back to back: ours (shingle + sign + band) vs datatrove's
    get_shingles + get_signature, on the 728 SPDX texts."""
    import gzip

    import datatrove.utils.hashes.xxhash as _dx
    import pyarrow as pa
    import xxhash

    _dx.xxhash64 = lambda d: xxhash.xxh64_intdigest(d.encode() if isinstance(d, str) else d)
    from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
    from datatrove.utils.hashing import HashConfig

    from stages.dedup.minhash import band_keys, shingle_texts, signatures

    with gzip.open(SHARED / "dedup" / "spdx_licenses.jsonl.gz", "rt") as f:
        docs = [json.loads(line)["text"] for line in f]
    mb = sum(len(t.encode()) for t in docs) / 1e6
    step = MinhashDedupSignature(
        tempfile.mkdtemp(), config=MinhashConfig(hash_config=HashConfig(precision=64))
    )
    for rep in range(reps):
        t0 = time.perf_counter()
        band_keys(signatures(shingle_texts(pa.array(docs))), 14, 8)
        ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        for t in docs:
            step.get_signature(step.get_shingles(t))
        peer = time.perf_counter() - t0
        print(
            f"rep {rep}: {len(docs)} docs {mb:.1f} MB: ours {ours:.2f}s ({len(docs) / ours:.0f} docs/s), "
            f"datatrove {peer:.2f}s ({len(docs) / peer:.0f} docs/s), ratio {peer / ours:.1f}x",
            flush=True,
        )


class _LocalBackend:
    """The global-stage backend run sequentially in this process, sampling the scratch folder after each task."""

    def __init__(self, work: Path):
        self.work = work
        self.peak = 0
        self.peak_at = ""

    def sample(self, where: str) -> None:
        size = _du(self.work)
        if size > self.peak:
            self.peak, self.peak_at = size, where

    def map_collect(self, ds, fn, rows, resources, name):
        import pyarrow.parquet as pq

        from refinery.schema import row_slices

        out = []
        for f in ds:
            for part in row_slices(pq.read_table(f), rows):
                out += fn(part).to_pylist()
                self.sample(name)
        return out

    def run_wave(self, fn, args, resources, name):
        out = []
        for a in args:
            out.append(fn(*a))
            self.sample(name)
        return out

    def dataset_from(self, fn, items, name):
        return fn, list(items)


def scratch(base_docs: int, seed: int, shard_docs: int, work: Path) -> dict:
    """Peak scratch and shuffle bytes per document of fuzzy_dedup's steps (in-process, see the module doc)."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    from refinery.location import Location
    from refinery.stage import GlobalContext
    from stages.dedup import shuffle
    from stages.dedup.fuzzy import FuzzyDedup

    corpus = work / f"corpus-{base_docs}-s{shard_docs}"
    ensure_corpus(corpus, base_docs, seed, shard_docs)
    docs = []
    for f in sorted(corpus.glob("part-*.jsonl.gz")):
        with gzip.open(f, "rt") as fh:
            for i, line in enumerate(fh):
                d = json.loads(line)
                docs.append({"id": str(d["id"]), "text": d["text"], "source": {"uri": str(f), "offset": i}})
    ckpt = work / "scratch-ckpt"
    shutil.rmtree(ckpt, ignore_errors=True)
    ckpt.mkdir(parents=True)
    files = []
    for i in range(0, len(docs), shard_docs):
        t = pa.Table.from_pylist(docs[i : i + shard_docs]).append_column(
            "run_id", pa.array(["bench"] * len(docs[i : i + shard_docs]))
        )
        files.append(str(ckpt / f"part-{i:08d}.parquet"))
        pq.write_table(t, files[-1], compression="zstd")
    n = len(docs)
    ckpt_bytes = _du(ckpt)
    scratch_dir = work / "scratch-work"
    shutil.rmtree(scratch_dir, ignore_errors=True)
    written: dict[str, int] = {}
    orig = shuffle.Store.write_one

    def counting(self, step, part, table, tag):  # every byte a step writes, by step
        orig(self, step, part, table, tag)
        size = self.folder(step, part).join(f"part-{tag}.parquet").size()
        key = step if not step.startswith("cc-") else "components"
        written[key] = written.get(key, 0) + size

    shuffle.Store.write_one = counting
    backend = _LocalBackend(scratch_dir)
    ctx = GlobalContext(
        work=Location(str(scratch_dir)),
        state=Location(str(work / "scratch-state")),
        backend=backend,
        label="fuzzy_dedup",
        num_cpus=2,
        input_bytes=ckpt_bytes,
        inputs=[Location(f) for f in files],
    )
    t0 = time.perf_counter()
    try:
        fn, items = FuzzyDedup({}).apply(files, ctx)
        verdicts = []
        for it in items:
            t = fn(it)
            backend.sample("final")
            if t is not None:
                verdicts += [
                    f"{s['uri']}:{s['offset']}:{d}"
                    for s, d in zip(t["source"].to_pylist(), t["_drop"].to_pylist(), strict=True)
                ]
        dropped = sum(1 for v in verdicts if not v.endswith(":None"))
    finally:
        shuffle.Store.write_one = orig
    seconds = time.perf_counter() - t0
    shutil.rmtree(work / "scratch-state", ignore_errors=True)
    return {
        "docs": n,
        "dropped": dropped,
        "verdicts_digest": hashlib.sha256("\n".join(sorted(verdicts)).encode()).hexdigest()[:16],
        "seconds": seconds,
        "checkpoint_per_doc": ckpt_bytes / n,
        "peak_per_doc": backend.peak / n,
        "peak_at": backend.peak_at,
        "shuffle_per_doc": sum(written.values()) / n,
        "written_per_doc": {k: round(v / n) for k, v in sorted(written.items())},
    }


def ensure_corpus(out: Path, docs: int, seed: int, shard_docs: int) -> dict:
    if not (out / "corpus.json").exists():
        make_corpus(out, docs=docs, seed=seed, shard_docs=shard_docs)
    return json.loads((out / "corpus.json").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(
        prog="python -m scripts.bench.dedup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--base-docs", type=int, default=5000)
    ap.add_argument("--scales", default="1,4,16")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--workers", type=int, default=2, help="datatrove workers (= cores)")
    ap.add_argument("--num-cpus", type=int, default=2, help="Ray logical CPUs for ours")
    ap.add_argument(
        "--shard-docs",
        type=int,
        default=2500,
        help="documents per input file; both systems parallelize over files, so keep files >= workers",
    )
    ap.add_argument("--skip-datatrove", action="store_true")
    ap.add_argument(
        "--datatrove-max-docs",
        type=int,
        default=None,
        help="run datatrove only at sizes up to this many documents (it is the slow side)",
    )
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "dedup.md")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--kernel", action="store_true", help="only the in-process signature-kernel comparison")
    ap.add_argument("--scratch", action="store_true", help="only scratch and shuffle bytes per document")
    args = ap.parse_args()
    if args.scratch:
        res = scratch(args.base_docs, args.seed, args.shard_docs, args.work or Path(tempfile.mkdtemp()))
        print(json.dumps(res, indent=1))
        return 0
    if args.kernel:
        kernel()
        return 0
    # absolute: datatrove runs in its own folder
    work = (args.work or Path(tempfile.mkdtemp(prefix="bench_dedup-"))).resolve()
    rows = []
    for k in [int(x) for x in args.scales.split(",")]:
        n = args.base_docs * k
        corpus = work / f"corpus-{n}-s{args.shard_docs}"
        meta = ensure_corpus(corpus, n, args.seed, args.shard_docs)
        text_bytes = meta.get("bytes") or meta.get("text_bytes") or 0
        print(f"[bench] {k}x: {n} docs, {text_bytes / 1e6:.1f} MB of text", flush=True)
        ours = run_ours(corpus, work, args.num_cpus)
        print(f"[bench]   ours: {json.dumps(ours)}", flush=True)
        peer = None
        if not args.skip_datatrove and (args.datatrove_max_docs is None or n <= args.datatrove_max_docs):
            peer = run_datatrove(corpus, work, args.workers)
            print(f"[bench]   datatrove: {json.dumps(peer)}", flush=True)
        rows.append({"scale": k, "docs": n, "text_bytes": text_bytes, "ours": ours, "datatrove": peer})
        shutil.rmtree(work / "ours-out", ignore_errors=True)
        shutil.rmtree(work / "datatrove", ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    write_report(args, rows)
    print(f"[bench] wrote {args.out}")
    return 0


def write_report(args, rows) -> None:
    mb = 1 << 20
    cmd = "python -m scripts.bench.dedup " + " ".join(sys.argv[1:])
    lines = [
        "# Dedup benchmark: fuzzy_dedup vs datatrove MinHash (4 steps)",
        "",
        f"Date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}. Machine: 2 cores, 24 GB, shared with other",
        f"engineers' jobs at the time (load average {os.getloadavg()[0]:.0f} at the end), so absolute times are noisy;",
        "compare the ratio within a row, measured back to back. Command:",
        "",
        f"    .venv/bin/{cmd}",
        "",
        "Parameters for both: word 5-grams, 14 bands × 8 rows. Ours: full pipeline (read, checkpoint, fuzzy_dedup with",
        f"exact-Jaccard verification, write, commit) on a local Ray with {args.num_cpus} logical CPUs; datatrove:",
        f"signatures + buckets + cluster + filter with {args.workers} workers.",
        "",
        "| scale | docs | text MB | ours wall s | ours dedup-stage s | datatrove wall s (sig/buckets/cluster/filter) "
        "| speed-up (wall) | ours driver peak RSS MB | ours total peak RSS MB | datatrove total peak RSS MB "
        "| ours state B/doc (work peak / dedup scratch peak / index) | datatrove state B/doc "
        "| rows out ours / datatrove |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o, d = r["ours"], r["datatrove"]
        n = r["docs"]
        if d:
            steps = "/".join(f"{d['steps'][s]:.0f}" for s in ("signatures", "buckets", "cluster", "filter"))
            dcol = f"{d['wall']:.1f} ({steps})"
            speed = f"{d['wall'] / o['wall']:.2f}×"
            drss = f"{d['total_peak'] / mb:.0f}"
            dstate = f"{d['work_peak'] / n:.0f}"
            dout = d["rows_out"]
        else:
            dcol = speed = drss = dstate = dout = "—"
        lines.append(
            f"| {r['scale']}× | {n} | {r['text_bytes'] / 1e6:.1f} | {o['wall']:.1f} | {o['stage_seconds']:.1f} | {dcol} | {speed} "
            f"| {o['driver_peak'] / mb:.0f} | {o['total_peak'] / mb:.0f} | {drss} | {o['work_peak'] / n:.0f} / "
            f"{o.get('scratch_peak', 0) / n:.0f} / "
            f"{o['index_bytes'] / n:.0f} | {dstate} | {o['rows_out']} / {dout} |"
        )
    if len(rows) > 1:
        base = rows[0]
        lines += ["", "Growth relative to 1× (ours wall, ours total peak RSS):", ""]
        for r in rows[1:]:
            lines.append(
                f"- {r['scale']}×: time ×{r['ours']['wall'] / base['ours']['wall']:.2f}, "
                f"peak RSS ×{r['ours']['total_peak'] / base['ours']['total_peak']:.2f}, "
                f"driver RSS ×{r['ours']['driver_peak'] / base['ours']['driver_peak']:.2f}"
            )
    lines.append("")
    # a hand-written "## Analysis" section of an earlier run is kept below the regenerated tables
    write_page(args.out, "\n".join(lines), keep_from="\n## Analysis")


if __name__ == "__main__":
    sys.exit(main())
