"""Scale benchmark (issue #19): the full configs/local.yaml stage list at 1M and 4M generated documents.

Why: at terabyte scale the bill is set by how cost grows with size. This runs `refinery run` with the stage list
of configs/local.yaml (normalize, length_filter, langid, gopher_repetition, gopher_quality, pii, exact_dedup,
fuzzy_dedup) on corpora of increasing size and records, per size, in one process tree sampled every 0.5 s:
  wall s            process wall time (and the pipeline's own wall_seconds from report.json)
  CPU s             user + system seconds of the driver and all its descendants (less sensitive than wall to
                    other jobs on a shared machine: the growth of both is reported)
  driver peak RSS   the `python -m jobs.run` process alone
  total peak RSS    sum of RSS over the process tree (driver, GCS, raylet, workers; shared pages counted once
                    per process: an upper bound), and the sum of PSS (shared pages split: the real footprint)
  peak scratch      bytes under <output>/_work (everything a run writes before its commit: checkpoints, dedup
                    intermediates, the output parts) plus Ray's temp folder (RAY_TMPDIR, set to a folder of the
                    run: session logs and spilled objects), sampled every ~2 s; per document too
and the growth of each from the first size to the others, against the targets (driver < 1 GB, wall <= 4.4x and
total peak RSS <= 1.5x from 1M to 4M).

    .venv/bin/python -m scripts.bench.scale                              # 1M then 4M, writes docs/benchmarks/scale.md
    .venv/bin/python -m scripts.bench.scale --docs 20000,80000 --no-md  # quick look
    .venv/bin/python -m scripts.bench.scale --set stages.5.params.ner_model=null   # pii without spaCy NER

The `pii` stage of configs/local.yaml runs spaCy NER (ner_model: auto), ~27 ms of CPU per document here: with it,
1M documents take about 4 h and 4M about 15 h on 2 cores; without it (patterns only) ~3 ms per document.

One corpus is generated for the largest size (scripts/data/make_corpus.py, seed 0, 20k docs per file); a smaller
size reads its first files (hard links under .bench/scale/), which are the same documents a corpus of that
size would have (a bigger corpus with the same seed starts with the smaller one). Sizes must be multiples of
--shard-docs. Outputs are deleted after each run (report.json is kept); `--cleanup` also deletes the corpora.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from scripts.bench import common
from scripts.bench.common import BENCH, REFINERY, ROOT

WORK = BENCH / "scale"
TARGETS = {"driver_rss_mb": 1024.0, "wall_ratio_per_4x": 4.4, "total_rss_ratio": 1.5}


def du(path: Path) -> int:
    """Bytes of the files under `path` (0 if it does not exist)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


class ScaleSampler(common.TreeSampler):
    """TreeSampler (ΣRSS, ΣPSS of the tree) plus the driver's own RSS, the tree's CPU seconds and the peak size
    of some folders (every `disk_every` samples); writes a progress file so a long run can be watched."""

    def __init__(self, root_pid: int, folders: list[Path], progress: Path, interval: float = 0.5) -> None:
        super().__init__(root_pid, interval, pss=True)
        self.folders = folders
        self.progress = progress
        self.disk_every = max(1, int(2 / interval))
        self.peak_driver_rss = 0
        self.peak_scratch = 0
        self.peak_scratch_at = 0.0
        self.cpu_by_pid: dict[int, float] = {}

    def sample(self) -> None:
        super().sample()
        for p in self._tree():
            try:
                if p.pid == self.root_pid:
                    self.peak_driver_rss = max(self.peak_driver_rss, p.memory_info().rss)
                ct = p.cpu_times()
                self.cpu_by_pid[p.pid] = max(self.cpu_by_pid.get(p.pid, 0.0), ct.user + ct.system)
            except (psutil.Error, OSError):
                continue
        if self.samples % self.disk_every == 1:
            scratch = sum(du(f) for f in self.folders)
            if scratch > self.peak_scratch:
                self.peak_scratch, self.peak_scratch_at = scratch, time.time() - self.t0
            mb = 1 << 20
            self.progress.write_text(
                json.dumps(
                    {
                        "elapsed_s": round(time.time() - self.t0, 1),
                        "scratch_now_mb": round(scratch / mb),
                        **self.extra(),
                        "peak_pss_mb": round(self.peak_pss / mb),
                        "peak_rss_sum_mb": round(self.peak_rss / mb),
                        "load_avg": os.getloadavg(),
                    }
                )
            )

    def extra(self) -> dict[str, Any]:
        mb = 1 << 20
        return {
            "peak_driver_rss_mb": round(self.peak_driver_rss / mb, 1),
            "peak_scratch_mb": round(self.peak_scratch / mb, 1),
            "peak_scratch_at_s": round(self.peak_scratch_at, 1),
            "cpu_s": round(sum(self.cpu_by_pid.values()), 1),
        }


def ensure_corpus(docs: int, shard_docs: int, seed: int) -> Path:
    out = BENCH / "corpus" / f"docs-{docs}-shard{shard_docs}-seed{seed}"
    meta = out / "corpus.json"
    if meta.is_file() and json.loads(meta.read_text())["docs"] == docs:
        return out
    return common.make_corpus(out, log="generating corpus: ", docs=docs, seed=seed, shard_docs=shard_docs)


def prefix_corpus(full: Path, docs: int, shard_docs: int, work: Path = WORK) -> Path:
    """A folder with hard links to the first docs / shard_docs files of `full`: the first `docs` documents."""
    if docs % shard_docs:
        raise SystemExit(f"--docs {docs} is not a multiple of --shard-docs {shard_docs}")
    parts = sorted(full.glob("part-*.jsonl.gz"))[: docs // shard_docs]
    out = work / f"corpus-{docs}"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for p in parts:
        os.link(p, out / p.name)
    return out


def corpus_bytes(full: Path, n_files: int) -> int:
    """Text bytes of the first `n_files` part files of `full`, pro rata from its corpus.json (which gives the
    total only; the parts hold the same number of documents)."""
    m = json.loads((full / "corpus.json").read_text())
    return int(m["bytes"] * n_files / len(m["files"]))


def local_config(path: Path, corpus: Path, out_uri: Path, num_cpus: int) -> Path:
    """configs/local.yaml with its stage list and ray settings, reading `corpus` and writing `out_uri`."""
    import yaml

    base = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    cfg = {
        "name": "bench-scale",
        "input": {"uri": str(corpus / "part-*.jsonl.gz"), "format": "jsonl", "id_field": "id"},
        "output": {**base.get("output", {}), "uri": str(out_uri), "if_exists": "overwrite"},
        "ray": {**base.get("ray", {}), "num_cpus": num_cpus},
        "stages": base["stages"],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def measure(
    docs: int, corpus: Path, text_bytes: int, num_cpus: int, interval: float, sets: list[str]
) -> dict[str, Any]:
    work = WORK / f"run-{docs}"
    if work.exists():
        shutil.rmtree(work)
    out_uri = work / "out"
    ray_tmp = Path(f"/tmp/rscale-{os.getpid()}-{docs}")  # short: Ray's socket paths must stay < 108 chars
    shutil.rmtree(ray_tmp, ignore_errors=True)
    cfg = local_config(work / "config.yaml", corpus, out_uri, num_cpus)
    cmd = [*REFINERY, "--config", str(cfg)] + [x for s in sets for x in ("--set", s)]
    env = {**os.environ, "PYTHONHASHSEED": "0", "RAY_TMPDIR": str(ray_tmp), "RAY_USAGE_STATS_ENABLED": "0"}
    print(
        f"[scale] {docs} docs, {text_bytes / 1e9:.2f} GB text → {shlex.join(cmd)}",
        file=sys.stderr,
        flush=True,
    )
    log = work / "run.log"
    load_start = [round(x, 2) for x in os.getloadavg()]
    with open(log, "w") as f:
        t0 = time.time()
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        s = ScaleSampler(proc.pid, [out_uri / "_work", ray_tmp], work / "progress.json", interval).start()
        rc = proc.wait()
        wall = time.time() - t0
        s.stop()
    rep = common.read_report(out_uri)
    res: dict[str, Any] = {
        "docs": docs,
        "text_gb": round(text_bytes / 1e9, 3),
        "rc": rc,
        "wall_s": round(wall, 1),
        "report_wall_s": rep.get("wall_seconds"),
        **s.summary(),
        **s.extra(),
        "scratch_b_per_doc": round(s.peak_scratch / docs),
        "load_avg_start": load_start,
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        "rows_read": rep.get("rows_read"),
        "rows_out": rep.get("rows_out"),
        "stage_seconds": {x["name"]: round(x.get("seconds") or 0.0, 1) for x in rep.get("stages", [])},
        "output_mb": round(du(out_uri / "data") / 2**20, 1),
        "config": str(cfg.relative_to(ROOT)),
        "cmd": shlex.join(cmd),
    }
    if rep:
        (work / "report.json").write_text(json.dumps(rep, indent=1))
    if rc != 0:
        res["error_tail"] = log.read_text(errors="replace")[-2000:]
        print(f"[scale] FAILED rc={rc}:\n{res['error_tail']}", file=sys.stderr)
    shutil.rmtree(out_uri, ignore_errors=True)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    print(
        f"[scale]   wall {res['wall_s']} s, CPU {res['cpu_s']} s, driver {res['peak_driver_rss_mb']} MB, "
        f"ΣRSS {res['peak_rss_sum_mb']} MB, ΣPSS {res['peak_pss_mb']} MB, scratch {res['peak_scratch_mb']} MB",
        file=sys.stderr,
        flush=True,
    )
    return res


def verdict(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Growth of each size against the first, and the targets (wall allowance scales with the size ratio)."""
    ok = [r for r in results if r["rc"] == 0]
    if not ok:
        return []
    base, out = ok[0], []
    for r in ok[1:]:
        k = r["docs"] / base["docs"]
        wall_limit = TARGETS["wall_ratio_per_4x"] * k / 4
        g = {
            "docs_ratio": k,
            "wall_ratio": round(r["wall_s"] / base["wall_s"], 2),
            "cpu_ratio": round(r["cpu_s"] / base["cpu_s"], 2) if base["cpu_s"] else None,
            "total_rss_ratio": round(r["peak_rss_sum_mb"] / base["peak_rss_sum_mb"], 2),
            "total_pss_ratio": round(r["peak_pss_mb"] / base["peak_pss_mb"], 2),
            "driver_rss_ratio": round(r["peak_driver_rss_mb"] / base["peak_driver_rss_mb"], 2),
            "scratch_ratio": round(r["peak_scratch_mb"] / base["peak_scratch_mb"], 2)
            if base["peak_scratch_mb"]
            else None,
            "wall_limit": round(wall_limit, 2),
        }
        g["pass"] = {
            "driver_rss": r["peak_driver_rss_mb"] < TARGETS["driver_rss_mb"],
            "wall": g["wall_ratio"] <= wall_limit,
            "total_rss": g["total_rss_ratio"] <= TARGETS["total_rss_ratio"],
        }
        out.append({"docs": r["docs"], "base_docs": base["docs"], **g})
    return out


def render_md(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    L = [
        "# Scale: the full local pipeline as the corpus grows (issue #19; target sizes 1M and 4M documents)\n",
        f"Generated by `python -m scripts.bench.scale` on {doc['started']} (UTC). Reproduce with:\n",
        f"```\n{doc['command']}\n```\n",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GiB RAM, {m['os']}, Python {m['python']}; "
        "shared with other engineers' jobs (load averages per run below), so wall times are noisy: the CPU "
        f"seconds of the process tree grow less with the load. Versions: {json.dumps(doc['versions'])}.\n",
        "Pipeline: the stage list of `configs/local.yaml` ("
        + " → ".join(doc["stages"])
        + f"), `ray.num_cpus` "
        f"{doc['num_cpus']}, input `scripts/data/make_corpus.py --docs N --seed {doc['seed']} --shard-docs "
        f"{doc['shard_docs']}` (JSONL.gz; a smaller size is the first files of the largest corpus). Config "
        f"overrides: {', '.join(f'`{x}`' for x in doc['sets']) or 'none'}.\n",
        "Measures: process wall; CPU s = user + system seconds summed over the process tree; driver = the "
        "`jobs.run` process's RSS; ΣRSS / ΣPSS = sum over the driver and all descendants (Ray GCS, raylet, "
        "workers); scratch = bytes under `<output>/_work` (checkpoints, dedup intermediates, uncommitted parts) "
        "plus Ray's temp folder (RAY_TMPDIR: session logs and spilled objects), sampled every 2 s.\n",
        "| docs | text GB | wall s | pipeline wall s | CPU s | driver peak RSS MB | total peak ΣRSS MB | "
        "total peak ΣPSS MB | peak scratch MB | scratch B/doc | rows out | output MB | load avg start→end |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in doc["results"]:
        if r["rc"] != 0:
            L.append(f"| {r['docs']} | {r['text_gb']} | failed (rc {r['rc']}) | | | | | | | | | | |")
            continue
        L.append(
            f"| {r['docs']} | {r['text_gb']} | {r['wall_s']} | {r['report_wall_s']} | {r['cpu_s']} | "
            f"{r['peak_driver_rss_mb']} | {r['peak_rss_sum_mb']} | {r['peak_pss_mb']} | {r['peak_scratch_mb']} | "
            f"{r['scratch_b_per_doc']} | {r['rows_out']} | {r['output_mb']} | "
            f"{r['load_avg_start'][0]}→{r['load_avg_end'][0]} |"
        )
    L.append("\nStage seconds (report.json, summed over workers):\n")
    for r in doc["results"]:
        if r.get("stage_seconds"):
            L.append(f"- {r['docs']}: " + ", ".join(f"{k} {v}" for k, v in r["stage_seconds"].items()))
    L.append("")
    for g in doc["verdict"]:
        p = g["pass"]
        L.append(
            f"**{g['docs']} / {g['base_docs']} docs (×{g['docs_ratio']:g}):** wall ×{g['wall_ratio']} "
            f"({'PASS' if p['wall'] else 'FAIL'}, target ≤ ×{g['wall_limit']}; CPU s ×{g['cpu_ratio']}), total "
            f"peak ΣRSS ×{g['total_rss_ratio']} ({'PASS' if p['total_rss'] else 'FAIL'}, target ≤ ×1.5; ΣPSS "
            f"×{g['total_pss_ratio']}), driver peak RSS ×{g['driver_rss_ratio']} "
            f"({'PASS' if p['driver_rss'] else 'FAIL'}: < 1 GB), peak scratch ×{g['scratch_ratio']}.\n"
        )
    if not doc["complete"]:
        L.append("**Partial: the run that wrote this page had not finished every size.**\n")
    L.append("Raw results: `.bench/scale/results.json` (timeline of ΣRSS/ΣPSS every ~2 s included).\n")
    return "\n".join(L) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.bench.scale", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--docs", default="1000000,4000000", help="comma-separated sizes; the first is the baseline"
    )
    ap.add_argument("--shard-docs", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--interval", type=float, default=0.5)
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        help="config override passed to refinery, e.g. stages.5.params.ner_model=null (pii without NER)",
    )
    ap.add_argument("--cleanup", action="store_true", help="delete the generated corpus at the end")
    ap.add_argument("--md", type=Path, default=ROOT / "docs" / "benchmarks" / "scale.md")
    ap.add_argument("--no-md", action="store_true")
    a = ap.parse_args(argv)
    sizes = [int(x) for x in a.docs.split(",") if x.strip()]
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    import yaml

    stages = [s["stage"] for s in yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())["stages"]]
    full = ensure_corpus(max(sizes), a.shard_docs, a.seed)
    results: list[dict[str, Any]] = []
    out = WORK / "results.json"

    def save(complete: bool) -> None:
        doc = {
            "started": started,
            "complete": complete,
            "machine": common.machine(),
            "versions": common.versions(),
            "command": shlex.join(
                [
                    ".venv/bin/python",
                    "-m",
                    "scripts.bench.scale",
                    *(argv if argv is not None else sys.argv[1:]),
                ]
            ),
            "stages": stages,
            "sets": a.sets,
            "num_cpus": a.num_cpus,
            "seed": a.seed,
            "shard_docs": a.shard_docs,
            "results": results,
            "verdict": verdict(results),
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1))
        if not a.no_md:  # a hand-written '## Analysis' section survives regeneration
            common.write_page(a.md, render_md(doc), keep_from="\n## Analysis")

    for n in sizes:
        corpus = full if n == max(sizes) else prefix_corpus(full, n, a.shard_docs)
        n_files = len(list(corpus.glob("part-*.jsonl.gz")))
        results.append(measure(n, corpus, corpus_bytes(full, n_files), a.num_cpus, a.interval, a.sets))
        save(complete=False)
    save(complete=True)
    for g in verdict(results):
        print(json.dumps(g))
    if a.cleanup:
        shutil.rmtree(full, ignore_errors=True)
        for d in WORK.glob("corpus-*"):
            shutil.rmtree(d, ignore_errors=True)
    print(f"results: {out}")
    return (
        0
        if all(r["rc"] == 0 for r in results) and all(all(g["pass"].values()) for g in verdict(results))
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
