"""Helpers shared by the benchmarks (scripts/bench) and the evaluations (scripts/eval).

What several of them repeat lives here once: the repository paths, writing a generated markdown page (keeping
its hand-written part), generating a corpus with scripts/data/make_corpus.py, running a command while sampling
the memory of its process tree, the config and report of a benchmark run, the machine and versions a page
records, Arrow batches of text as our stages receive them, and the glue to run datatrove and presidio beside
our stages.

Modules import it as `from scripts.bench.common import ...`; run them from the repository root
(`python -m scripts.bench.memory`, `python -m scripts.eval.dedup`, ...). Heavy or optional libraries (PyArrow,
YAML, datatrove, presidio) are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"  # the real data sets, ../shared/data from the repository root
BENCH = ROOT / ".bench"  # generated corpora and benchmark work folders (ignored by git)
PY = Path(sys.executable)
REFINERY = [str(PY), "-m", "jobs.run"]


# ------------------------------------------------------------------------------------------ pages


def write_page(path: str | Path, text: str, keep_from: str | None = None, sep: str = "") -> str:
    """Write a generated markdown page and return what was written. With `keep_from`, the old page's part
    from that marker on (a hand-written analysis or notes section) is appended after `sep`, so a re-run keeps
    it."""
    path = Path(path)
    if keep_from and path.is_file():
        old = path.read_text()
        if keep_from in old:
            text += sep + old[old.index(keep_from) :]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


# ------------------------------------------------------------------------------------------ corpora


def make_corpus(out: Path, log: str | None = None, **params: Any) -> Path:
    """Generate a corpus into `out` with scripts/data/make_corpus.py (deterministic: the same parameters give
    the same files); `params` are its options (docs=, scale=, seed=, shard_docs=). `log` prefixes the command
    line printed to stderr (nothing is printed without it)."""
    cmd = [sys.executable, "-m", "scripts.data.make_corpus", "--out", str(Path(out).absolute())]
    for key, value in params.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    cmd.append("--quiet")
    if log is not None:
        print(f"[bench] {log}{shlex.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, check=True, cwd=ROOT)
    return out


# ------------------------------------------------------------------------------------- process-tree sampling


def _classify(p: psutil.Process, root_pid: int) -> str:
    if p.pid == root_pid:
        return "driver"
    try:
        name = p.name()
        cmd = " ".join(p.cmdline()[:3])
    except (psutil.Error, OSError):
        return "other"
    if "gcs_server" in name or "gcs_server" in cmd:
        return "gcs_server"
    if "raylet" in name or "raylet" in cmd:
        return "raylet"
    if name.startswith("ray::") or "default_worker.py" in cmd:
        return "workers"
    return "other"


class TreeSampler:
    """Samples memory of a process and all its descendants in a background thread."""

    def __init__(self, root_pid: int, interval: float = 0.2, pss: bool = True) -> None:
        self.root_pid = root_pid
        self.interval = interval
        self.pss = pss
        self.samples = 0
        self.peak_rss = 0
        self.peak_pss = 0
        self.peak_breakdown: dict[str, int] = {}
        self.peak_procs = 0
        self.peak_time = 0.0
        self.t0 = time.time()
        self.timeline: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._procs: dict[int, psutil.Process] = {}

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _tree(self) -> list[psutil.Process]:
        try:
            root = psutil.Process(self.root_pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return []
        out = []
        for p in procs:  # reuse Process objects so psutil's pid-reuse check holds
            out.append(self._procs.setdefault(p.pid, p))
        return out

    def sample(self) -> None:
        rss = pss = 0
        by_kind: dict[str, int] = {}
        procs = self._tree()
        for p in procs:
            try:
                if self.pss:
                    mi = p.memory_full_info()
                    r, s = mi.rss, getattr(mi, "pss", mi.rss)
                else:
                    r = s = p.memory_info().rss
            except (psutil.Error, OSError):
                continue
            rss += r
            pss += s
            k = _classify(p, self.root_pid)
            by_kind[k] = by_kind.get(k, 0) + s
        self.samples += 1
        t = time.time() - self.t0
        self.timeline.append((round(t, 2), rss, pss))
        self.peak_rss = max(self.peak_rss, rss)
        if pss > self.peak_pss:
            self.peak_pss = pss
            self.peak_breakdown = by_kind
            self.peak_procs = len(procs)
            self.peak_time = t

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def summary(self) -> dict[str, Any]:
        mb = 1 << 20
        return {
            "peak_pss_mb": round(self.peak_pss / mb, 1),
            "peak_rss_sum_mb": round(self.peak_rss / mb, 1),
            "peak_breakdown_pss_mb": {k: round(v / mb, 1) for k, v in sorted(self.peak_breakdown.items())},
            "peak_at_s": round(self.peak_time, 1),
            "processes_at_peak": self.peak_procs,
            "samples": self.samples,
            # every ~2 s: (seconds, ΣRSS MB, ΣPSS MB), enough to see where the peak happens
            "timeline_mb": [
                (t, round(r / mb), round(p / mb))
                for t, r, p in self.timeline[:: max(1, int(2 / self.interval))]
            ],
        }


def run_measured(
    cmd: list[str],
    log_path: Path,
    interval: float = 0.2,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
    pss: bool = True,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run a command, sampling its process tree; returns wall seconds, exit code and memory peaks."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        t0 = time.time()
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        sampler = TreeSampler(proc.pid, interval, pss).start()
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 15)  # the session we started, nothing else
            rc = proc.wait()
        wall = time.time() - t0
        sampler.stop()
    return {"cmd": shlex.join(cmd), "rc": rc, "wall_s": round(wall, 2), **sampler.summary()}


def run_measured_retrying(
    cmd: list[str], log_path: Path, who: str = "", attempts: int = 3, **kwargs: Any
) -> dict[str, Any]:
    """`run_measured`, run again (up to `attempts` times in all) only when Ray's fixed 30 s node start-up
    limit tripped, which happens on a busy shared machine. `who` names the run in the retry message."""
    for attempt in range(attempts):
        res = run_measured(cmd, log_path, **kwargs)
        if (
            res["rc"] == 0
            or "timed out during startup" not in log_path.read_text(errors="replace")
            or attempt == attempts - 1
        ):
            break
        print(f"[bench] {who}Ray start-up timed out on the busy machine; retrying", file=sys.stderr)
    return res


# ------------------------------------------------------------------------------------------ benchmark runs


def write_config(
    path: Path,
    corpus: Path,
    out_uri: Path,
    stages: list[dict[str, Any]],
    num_cpus: int = 2,
    name: str = "bench",
) -> Path:
    """A pipeline config reading a generated corpus (part-*.jsonl.gz) into `out_uri`, overwriting it."""
    import yaml

    cfg = {
        "name": name,
        "input": {"uri": str(corpus / "part-*.jsonl.gz"), "format": "jsonl", "id_field": "id"},
        "output": {"uri": str(out_uri), "if_exists": "overwrite"},
        "ray": {"num_cpus": num_cpus},
        "stages": stages,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def read_report(out_uri: Path) -> dict[str, Any]:
    p = out_uri / "report.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def machine() -> dict[str, Any]:
    try:
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), ""
        )
    except OSError:
        cpu = platform.processor()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("ray", "pyarrow", "corpus-refinery", "psutil"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    try:
        out["git"] = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        pass
    return out


# ------------------------------------------------------------------------------------- our stages in-process


def text_table(texts: list[str], **columns: Any):
    """An Arrow table as a stage receives it: ids "0", "1", ..., the texts as large_string, and `columns`."""
    import pyarrow as pa

    return pa.table(
        {"id": [str(i) for i in range(len(texts))], "text": pa.array(texts, pa.large_string()), **columns}
    )


def text_batches(texts: list[str], batch_rows: int) -> Iterator:
    """`text_table`s of at most `batch_rows` texts, in order."""
    for s in range(0, len(texts), batch_rows):
        yield text_table(texts[s : s + batch_rows])


# ------------------------------------------------------------------------------------------ peers in-process


def datatrove_filters() -> dict[str, Any]:
    """datatrove's four quality filters with their defaults, by the name of our stage that matches each."""
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    return {
        "gopher_repetition": GopherRepetitionFilter(),
        "gopher_quality": GopherQualityFilter(),
        "c4_quality": C4QualityFilter(),
        "fineweb_quality": FineWebQualityFilter(),
    }


# The standalone runner of datatrove's 4-step MinHash pipeline (signatures, buckets, cluster, filter); it runs
# in its own process with this interpreter (the dev extra installs datatrove) and prints "TIMES {json}".
DATATROVE_MINHASH = ROOT / "scripts" / "bench" / "peers" / "datatrove_minhash.py"


def datatrove_minhash(
    folder: Path, pattern: str, work: Path, ngram: int, bands: int, rows: int, workers: int
) -> tuple[list[str], dict[str, str], Path]:
    """A fresh datatrove work folder (work/datatrove) and the command and environment that run the MinHash
    pipeline on folder/pattern in it (run it with cwd = that folder) -> (cmd, env, folder)."""
    dt_work = work / "datatrove"
    shutil.rmtree(dt_work, ignore_errors=True)
    dt_work.mkdir(parents=True)
    cmd = [
        sys.executable,
        str(DATATROVE_MINHASH),
        str(folder),
        pattern,
        str(dt_work),
        str(ngram),
        str(bands),
        str(rows),
        str(workers),
    ]
    return cmd, dict(os.environ, HF_HOME=str(dt_work / "hf")), dt_work


def datatrove_times(stdout: str) -> dict[str, float]:
    """Per-step seconds from the MinHash runner's output."""
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("TIMES "))[6:])


PRESIDIO_PATTERN_ENTITIES = [
    "EMAIL_ADDRESS",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "CRYPTO",
    "PHONE_NUMBER",
]


def presidio_engine(model: str | None) -> tuple[Any, list[str]]:
    """presidio's AnalyzerEngine alone (pattern recognizers, plus NER with a spaCy `model`) and the entity
    types to ask it for: the baseline our `pii` stage is measured against."""
    from stages.pii.scrub import build_presidio

    ents = list(PRESIDIO_PATTERN_ENTITIES)
    if model:
        ents += ["PERSON", "LOCATION", "ORGANIZATION"]
    return build_presidio(model), ents
