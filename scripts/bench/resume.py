"""Resume benchmark (issue #15): a run killed with SIGKILL part-way, then re-run, against the uninterrupted run.

Why: a resumed run must pay only for the work that was not yet durable, and commit the very same bytes. This runs
the full `configs/local.yaml` stage list on a generated corpus (scripts/data/make_corpus.py), once uninterrupted
(wall time T), then for each kill point f: the whole process group (driver, Ray's GCS, raylet and workers) is
killed with SIGKILL at f × T, and the same command is run again. Target per kill point: re-run wall time
≤ (1 − f) × T + 20 s, and the committed files (path and sha256 in manifest.json) identical to the uninterrupted
run's, with `refinery verify` passing. The same with input and output on a SeaweedFS S3 server on 127.0.0.1, and
once more through a proxy that answers 10% of requests `503 SlowDown` and cuts 1% of GET bodies mid-stream
(target: identical output in ≤ 1.5 × the unthrottled wall time).

    .venv/bin/python -m scripts.bench.resume                          # 40k documents, local and S3, throttled
    .venv/bin/python -m scripts.bench.resume --docs 10000 --targets local --no-throttle --no-md   # quick look
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from scripts.bench import common
from scripts.bench.common import BENCH, REFINERY, ROOT
from tests.job_process import kill_job, start_job

MD = ROOT / "docs" / "benchmarks" / "resume.md"


def config(corpus: str, out: str, in_opts: dict, out_opts: dict) -> dict[str, Any]:
    """configs/local.yaml's stage list over the generated corpus."""
    local = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    return {
        "name": "resume-bench",
        "input": {"uri": corpus, "format": "jsonl", "id_field": "id", "storage_options": in_opts},
        "output": {"uri": out, "storage_options": out_opts},
        "ray": {"num_cpus": 2},
        "stages": local["stages"],
    }


def run(cfg: dict, work: Path, tag: str, kill_after: float | None = None) -> dict[str, Any]:
    """Run the job in its own session; with `kill_after`, SIGKILL its whole process tree after that many seconds."""
    path = work / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    with open(work / f"{tag}.log", "w") as log:
        t0 = time.time()
        proc = start_job(path, python=REFINERY[0], stdout=log)
        try:
            rc = proc.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            kill_job(proc)
            rc = -9
    return {"rc": rc, "wall_s": round(time.time() - t0, 1)}


class Store:
    """Where the output lives (local folder or S3) and how to read what a run committed there."""

    def __init__(self, out: str, opts: dict, fs: Any = None) -> None:
        self.out, self.opts, self.fs = out, opts, fs

    def _json(self, name: str) -> dict:
        if self.fs is None:
            return json.loads((Path(self.out) / name).read_text())
        return json.loads(self.fs.cat_file(f"{self.out.removeprefix('s3://').rstrip('/')}/{name}"))

    def committed(self) -> dict[str, Any]:
        from refinery.commit import verify

        manifest, report = self._json("manifest.json"), self._json("report.json")
        return {
            "files": sorted((f["path"], f["sha256"]) for f in manifest["files"]),
            "rows_out": report["rows_out"],
            "resume": report.get("resume", {}),
            "storage_retries": report.get("storage_retries", {}),
            "verify": verify(self.out, self.opts),
        }

    def wipe(self) -> None:
        if self.fs is None:
            shutil.rmtree(self.out, ignore_errors=True)
        elif self.fs.exists(self.out):
            self.fs.rm(self.out, recursive=True)


def series(
    name: str, cfg: dict, store: Store, fractions: list[float], work: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The series' results, and what the uninterrupted run committed (the throttled run compares with it)."""
    store.wipe()
    full = run(cfg, work, f"{name}-full")
    assert full["rc"] == 0, f"{name}: the uninterrupted run failed (see {work}/{name}-full.log)"
    want = store.committed()
    rows = []
    for f in fractions:
        store.wipe()
        killed = run(cfg, work, f"{name}-kill{int(f * 100)}", kill_after=f * full["wall_s"])
        again = run(cfg, work, f"{name}-resume{int(f * 100)}")
        got = store.committed() if again["rc"] == 0 else {}
        budget = (1 - f) * full["wall_s"] + 20
        rows.append(
            {
                "fraction": f,
                "killed_rc": killed["rc"],
                "rerun_s": again["wall_s"],
                "budget_s": round(budget, 1),
                "within": again["wall_s"] <= budget,
                "identical": got.get("files") == want["files"],
                "verify_ok": got.get("verify") == [],
                "units_reused": got.get("resume", {}).get("units_reused"),
                "batches_reused": got.get("resume", {}).get("batches_reused", 0),
                "units": got.get("resume", {}).get("units"),
                "steps_reused": len(got.get("resume", {}).get("steps_reused", [])),
            }
        )
        print(f"[resume] {name} f={f}: {rows[-1]}", file=sys.stderr)
    summary = {
        "full_s": full["wall_s"],
        "files": len(want["files"]),
        "rows_out": want["rows_out"],
        "kills": rows,
    }
    return summary, want


def throttled(
    cfg: dict,
    store: Store,
    port: int,
    work: Path,
    slowdown: float,
    resets: float,
    plain_s3: tuple[float, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`plain_s3`: the S3 series' uninterrupted run (wall time, what it committed), so it is not run twice."""
    from tests.throttle_proxy import ThrottleProxy

    if plain_s3 is None:
        store.wipe()
        plain = run(cfg, work, "s3-plain")
        want = store.committed()
    else:
        plain, want = {"wall_s": plain_s3[0]}, plain_s3[1]
    direct = {side: dict(cfg[side]["storage_options"]) for side in ("input", "output")}

    def through_proxy(share: float, cut: float, tag: str) -> tuple[dict[str, Any], dict[str, int]]:
        store.wipe()
        with ThrottleProxy(port, slowdown=share, resets=cut, seed=11) as proxy:
            for side in ("input", "output"):
                cfg[side]["storage_options"] = {**direct[side], "endpoint_url": proxy.endpoint}
            res = run(cfg, work, tag)
            return res, {"requests": 0, "slowdown": 0, "resets": 0, **proxy.stats}

    # the proxy itself (one Python process relaying every byte) costs time: measured with nothing injected
    relayed, _ = through_proxy(0.0, 0.0, "s3-proxy")
    slow, stats = through_proxy(slowdown, resets, "s3-throttled")
    for side in ("input", "output"):
        cfg[side]["storage_options"] = direct[side]
    got = store.committed() if slow["rc"] == 0 else {}
    return {
        "plain_s": plain["wall_s"],
        "proxy_s": relayed["wall_s"],
        "throttled_s": slow["wall_s"],
        "ratio": round(slow["wall_s"] / relayed["wall_s"], 2),
        "ratio_direct": round(slow["wall_s"] / plain["wall_s"], 2),
        "identical": got.get("files") == want["files"],
        "verify_ok": got.get("verify") == [],
        "proxy": stats,
        "storage_retries": got.get("storage_retries", {}),
    }


def page(args: argparse.Namespace, res: dict[str, Any]) -> str:
    cmd = f"`.venv/bin/python -m scripts.bench.resume --docs {args.docs} --shard-docs {args.shard_docs}`"
    lines = [
        f"## Resume after SIGKILL ({dt.date.today().isoformat()})",
        "",
        f"Command: {cmd}  ",
        f"Machine: {os.cpu_count()} cores, shared (load average at start {res['load']:.1f}).  ",
        f"Corpus: {args.docs:,} generated documents in files of {args.shard_docs:,} (scripts/data/make_corpus.py; "
        "a gzipped file cannot be split, so each is one unit of work), the full `configs/local.yaml` "
        "stage list. Each kill sends SIGKILL to the whole process group (driver, GCS, raylet, workers) at the "
        "given share of the uninterrupted wall time T; the same command is then run again. Re-run wall time "
        "includes Ray's start-up, as T does.",
        "",
        "| output | T (s) | killed at | re-run (s) | target ≤ (1−f)·T + 20 s | units reused | dedup steps "
        "reused | same files (sha256) | verify |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in res["series"].items():
        for k in s["kills"]:
            ok = "✅" if k["within"] else "❌"
            lines.append(
                f"| {name} | {s['full_s']} | {k['fraction']:.0%} | {k['rerun_s']} | {k['budget_s']} {ok} | "
                f"{k['units_reused']}/{k['units']} | {k['steps_reused']} | "
                f"{'yes' if k['identical'] else 'NO'} | {'passes' if k['verify_ok'] else 'FAILS'} |"
            )
    if res.get("throttled"):
        t = res["throttled"]
        lines += [
            "",
            f"Throttled S3 (proxy: {args.slowdown:.0%} of requests answered `503 SlowDown`, {args.resets:.0%} of "
            f"GET bodies cut mid-stream): {t['throttled_s']} s vs {t['proxy_s']} s through the same proxy with "
            f"nothing injected = **{t['ratio']}×** (target ≤ 1.5×); {t['ratio_direct']}× the {t['plain_s']} s "
            f"without the proxy; output identical: {'yes' if t['identical'] else 'NO'}; verify "
            f"{'passes' if t['verify_ok'] else 'FAILS'}. Proxy: {json.dumps(t['proxy'])}; retried requests counted "
            f"in report.json: {json.dumps(t['storage_retries'])}.",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.bench.resume")
    ap.add_argument("--docs", type=int, default=40_000)
    ap.add_argument(
        "--shard-docs", type=int, default=500,
        help="documents per input file: a .jsonl.gz file is one unit of work, so this sets what a kill can lose",
    )  # fmt: skip
    ap.add_argument("--fractions", default="0.3,0.6,0.9")
    ap.add_argument("--targets", default="local,s3")
    ap.add_argument("--slowdown", type=float, default=0.10)
    ap.add_argument("--resets", type=float, default=0.01)
    ap.add_argument("--no-throttle", action="store_true")
    ap.add_argument("--no-md", action="store_true")
    args = ap.parse_args()
    fractions = [float(f) for f in args.fractions.split(",")]
    targets = args.targets.split(",")
    work = BENCH / "resume"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    corpus = BENCH / "corpus" / f"resume-{args.docs}-{args.shard_docs}"
    if not corpus.is_dir():
        common.make_corpus(corpus, log="", docs=args.docs, shard_docs=args.shard_docs)
    res: dict[str, Any] = {"load": os.getloadavg()[0], "series": {}}
    if "local" in targets:
        out = str(work / "out")
        res["series"]["local disk"], _ = series(
            "local", config(str(corpus / "part-*.jsonl.gz"), out, {}, {}), Store(out, {}), fractions, work
        )
    if "s3" in targets or not args.no_throttle:
        from tests.s3_server import SeaweedS3

        srv = SeaweedS3(work / "s3").start()
        try:
            admin = srv.fs("admin")
            for f in sorted(corpus.glob("part-*.jsonl.gz")):
                admin.put_file(str(f), f"{srv.in_bucket}/corpus/{f.name}")
            out = f"s3://{srv.out_bucket}/resume/"
            cfg = config(f"s3://{srv.in_bucket}/corpus/part-*.jsonl.gz", out, srv.options("reader"), {})
            cfg["output"]["storage_options"] = srv.options("writer")
            store = Store(out, srv.options("writer"), admin)
            plain_s3 = None
            if "s3" in targets:
                summary, want = series("s3", cfg, store, fractions, work)
                res["series"]["S3 (SeaweedFS)"], plain_s3 = summary, (summary["full_s"], want)
            if not args.no_throttle:
                port = int(srv.ports["s3"])
                res["throttled"] = throttled(cfg, store, port, work, args.slowdown, args.resets, plain_s3)
        finally:
            srv.stop()
    (work / "result.json").write_text(json.dumps(res, indent=2))
    text = page(args, res)
    print(text)
    if not args.no_md:
        common.write_page(MD, "# Resume benchmark\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
