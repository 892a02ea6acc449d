"""Erase documents on request from a refresh output's snapshots or a run output: `refinery forget ROOT --request FILE`.

Why: erasure requests (GDPR/CCPA, takedowns, offboarding) arrive after publishing. The corpus must drop the
documents, their near-copies and their future re-appearances, and keep a record of the removal that holds no
content. Steps, under the refresh's lease lock (a refresh and a forget never run at once):

1. Recover a crashed forget (`_state/forgotten/pending.json`): every new generation committed → roll forward,
   else roll back (delete the uncommitted generations and the pending set).
2. Match: rows of each snapshot's current generation whose id, URL, URL prefix, domain, text or text sha256 is in
   the request are *targets*; the request's texts and the targets' texts make a `ForgottenSet` (sha256 + MinHash
   signature, stages/forgotten.py); every row that set matches (the targets and their near-copies, estimated
   Jaccard ≥ `--threshold`) is removed.
3. Write `pending.json` (the request id, the new generation of each affected snapshot, sha256 of removed ids)
   and the set as `pending-<request>.parquet`; then publish each affected snapshot's new generation under
   `generations/<snapshot>/<gen>/` (a normal committed output without those rows)          [forget:after_generations]
4. Move the pointer: `generations.json` (one atomic write names the current generation of every snapshot),
   then `latest` when its snapshot changed                                                  [forget:after_pointer]
5. Remove the rows' entries from the dedup index generations; persist the set as `set-<request>.parquet` and the
   request, hashed, as `requests/<request>.json`; delete `pending.json`                     [forget:after_state]

Readers of the old generation keep a consistent old state until step 4: nothing of it is changed until a purge
(`--purge`, or `refinery gc --yes` after a grace period) deletes its rows; `generations.json` records every
superseded generation (`superseded`) and when it was purged, and a purged folder holds `_PURGED` instead of
`_SUCCESS`, so nothing readable promises rows that are gone.

A plain run output (ROOT holds `_SUCCESS`) is read in place, so it gets no generations: the kept rows are staged
under `_work/<request>/` (`staged.json` last) [forget:after_generations], then committed over the same folder with
the journaled commit protocol (refinery/commit.py), which deletes the old parts that held removed rows
[forget:after_pointer], then step 5. A crash inside that commit leaves the output unpublished (no `_SUCCESS`), as a
crashed run's commit does; the next forget re-commits the staged rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from refinery.accounting import check_accounting
from refinery.commit import PUBLISHED_DIRS, PURGED, SUCCESS, WORK_DIR, commit, committed_manifest
from refinery.config import ConfigError
from refinery.faults import maybe_fail
from refinery.fsio import join
from refinery.location import Location
from refinery.progress import progress
from refinery.refresh import runlog
from refinery.refresh.lock import LeaseLock
from refinery.refresh.snapshots import (
    LATEST,
    committed_snapshots,
    read_latest,
    refresh_state_uri,
    snapshot_uri,
    snapshots_uri,
)
from refinery.schema import row_domain, row_url
from refinery.writer import PartWriter
from stages.forgotten import (
    DEFAULT_THRESHOLD,
    FORGOTTEN,
    ForgottenSet,
    load_forgotten,
    minhashes,
    set_table,
    text_hashes,
)

KINDS = ("id", "url", "url_prefix", "domain", "text", "sha256")
GENERATIONS = "generations.json"  # <root>/generations.json: the current generation of every snapshot
GEN_DIR = "generations"
STATE = "_state"
RUN_OUTPUT = "output"  # the key of a plain run output where a refresh root has snapshot ids
STAGED = "staged.json"  # _work/<request>/staged.json: a run output's kept rows, ready to commit


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- the request ----------------------------------------------------------------------------------------------


@dataclass
class Request:
    """A parsed erasure request. Only `hashed()` is ever stored; the values stay in memory."""

    items: list[tuple[str, str]]

    @property
    def request_id(self) -> str:
        return sha("\n".join(sorted(f"{k}\t{sha(v)}" for k, v in self.items)))[:16]

    def hashed(self) -> list[dict[str, str]]:
        return [{"kind": k, "sha256": v if k == "sha256" else sha(v)} for k, v in sorted(set(self.items))]

    def values(self, kind: str) -> set[str]:
        return {v for k, v in self.items if k == kind}


def parse_request(path: str, so: dict[str, Any] | None = None) -> Request:
    """JSON Lines, one item per line: {"id"|"url"|"url_prefix"|"domain"|"text"|"sha256": value}."""
    errors: list[tuple[str, str]] = []
    items: list[tuple[str, str]] = []
    body = Location(path, so).read_bytes().decode("utf-8", errors="replace")
    for n, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            errors.append((f"line {n}", f"not JSON: {e.msg}"))  # the position only, never the content
            continue
        if not isinstance(obj, dict) or len(obj) != 1 or next(iter(obj)) not in KINDS:
            errors.append((f"line {n}", f"expected one key of {', '.join(KINDS)}"))
            continue
        kind, value = next(iter(obj.items()))
        if not isinstance(value, str) or not value:
            errors.append((f"line {n}", f"{kind}: expected a non-empty string"))
            continue
        if kind == "sha256" and (len(value) != 64 or any(c not in "0123456789abcdef" for c in value.lower())):
            errors.append((f"line {n}", "sha256: expected 64 hex digits"))
            continue
        if kind == "domain":
            value = value.lower().removeprefix("www.")
        items.append((kind, value.lower() if kind == "sha256" else value))
    if not items and not errors:
        errors.append(("<file>", "the request names nothing"))
    if errors:
        raise ConfigError(path, errors)
    return Request(items)


def direct_matches(t: pa.Table, req: Request) -> np.ndarray:
    """Rows the request names: by id, URL, URL prefix, domain, text or text sha256."""
    n = t.num_rows
    hit = np.zeros(n, dtype=bool)
    ids = req.values("id")
    if ids:
        hit |= pc.is_in(t["id"].cast(pa.string()), pa.array(sorted(ids))).to_numpy(zero_copy_only=False)
    urls, prefixes = req.values("url"), sorted(req.values("url_prefix"))
    if urls or prefixes:
        url = pc.fill_null(row_url(t), "")
        if urls:
            hit |= pc.is_in(url, pa.array(sorted(urls))).to_numpy(zero_copy_only=False)
        for p in prefixes:
            hit |= pc.starts_with(url, p).to_numpy(zero_copy_only=False)
    domains = req.values("domain")
    if domains:
        dom = pc.fill_null(row_domain(t), "")
        hit |= pc.is_in(dom, pa.array(sorted(domains))).to_numpy(zero_copy_only=False)
    hashes = req.values("sha256") | {sha(x) for x in req.values("text")}
    if hashes:
        hit |= np.array([h in hashes for h in text_hashes(pc.fill_null(t["text"], "").to_pylist())], bool)
    return hit


# --- snapshots and their generations --------------------------------------------------------------------------


def read_generations(root: str, so: dict[str, Any] | None = None) -> dict[str, Any]:
    rec = Location(root, so).join(GENERATIONS).read_json_or_none()
    return rec if isinstance(rec, dict) else {"snapshots": {}}


def current_generations(root: str, so: dict[str, Any] | None = None) -> dict[str, str]:
    """snapshot id → uri of the folder to read: its latest generation, or the snapshot folder itself."""
    gens = read_generations(root, so)["snapshots"]
    return {
        sid: join(root, gens[sid]["path"]) if sid in gens else snapshot_uri(root, sid)
        for sid in committed_snapshots(root, so)
    }


def list_snapshots(root: str, so: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """`refinery snapshots`: the current published generation of every snapshot."""
    gens = read_generations(root, so)["snapshots"]
    out = []
    for sid, uri in current_generations(root, so).items():
        m = committed_manifest(uri, so) or {}
        g = gens.get(sid, {})
        out.append(
            {
                "id": sid,
                "uri": uri,
                "generation": g.get("generation", "g1"),
                "rows": m.get("counts", {}).get("rows_out"),
                "created_at": m.get("created_at"),
                "requests": g.get("requests", []),
            }
        )
    return out


def root_kind(root: str, so: dict[str, Any]) -> str:
    """'refresh' (ROOT holds snapshots/) or 'run' (a committed run output, or one a crashed forget unpublished)."""
    loc = Location(root, so)
    if Location(snapshots_uri(root), so).exists():
        return "refresh"
    pending = loc.join(STATE, FORGOTTEN, "pending.json").read_json_or_none()
    if loc.join(SUCCESS).exists() or (isinstance(pending, dict) and pending.get("mode") == "run"):
        return "run"
    raise ConfigError(
        root,
        [
            (
                "ROOT",
                "neither a refresh output (snapshots/) nor a committed run output (_SUCCESS); nothing to forget",
            )
        ],
    )


def readable_outputs(root: str, so: dict[str, Any] | None = None) -> dict[str, str]:
    """What readers read: each snapshot's current generation, or the run output itself (key `output`)."""
    so = so or {}
    if Location(snapshots_uri(root), so).exists():
        return current_generations(root, so)
    return {RUN_OUTPUT: root} if Location(root, so).join(SUCCESS).exists() else {}


def control_uri(root: str, so: dict[str, Any]) -> str:
    """Where the lease lock and the run log live: the refresh's (a refresh and a forget exclude each other), or
    `_state/forgotten/` of a run output (so that forgetting does not make it look like a refresh root)."""
    return refresh_state_uri(root) if root_kind(root, so) == "refresh" else join(root, STATE, FORGOTTEN)


def data_tables(uri: str, so: dict[str, Any] | None, columns: list[str] | None = None) -> Iterator[pa.Table]:
    manifest = committed_manifest(uri, so) or {}
    for f in manifest.get("files", []):
        if f["kind"] == "data":
            with Location(uri, so).join(f["path"]).open("rb") as fh:
                yield pq.read_table(fh, columns=columns)


# --- forget ---------------------------------------------------------------------------------------------------


@dataclass
class ForgetResult:
    request_id: str
    outcome: str  # applied | already_applied | nothing_matched
    removed: dict[str, int] = field(default_factory=dict)  # snapshot id → rows removed from its data
    recovered: list[str] = field(default_factory=list)
    purged: list[str] = field(
        default_factory=list
    )  # superseded generations whose rows were deleted (--purge)
    seconds: float = 0.0


def forget(
    root: str,
    request_path: str,
    so: dict[str, Any] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    lock_ttl_s: float = 6 * 3600,
    purge: bool = False,
) -> ForgetResult:
    """Apply an erasure request to ROOT (a refresh root or a run output); `purge` then deletes the rows of the
    generations this request superseded (readers still reading them break)."""
    so = so or {}
    root = root.rstrip("/")
    kind = root_kind(root, so)
    if kind == "run":
        _check_run_state(root, so)
    req = parse_request(request_path, so)
    rid = req.request_id
    state_uri = control_uri(root, so)
    lock = LeaseLock(join(state_uri, "LOCK"), ttl_s=lock_ttl_s, storage_options=so)
    lock.acquire()
    t0 = time.time()
    runlog.append(state_uri, {"event": "start", "kind": "forget", "request_id": rid, "owner": lock.owner}, so)
    try:
        result = _forget_locked(root, so, req, threshold, kind)
        if purge:
            result.purged = [p["path"] for p in purge_superseded(root, so, min_age_s=0, request_id=rid)]
    except BaseException as e:
        runlog.append(
            state_uri,
            {
                "event": "end",
                "kind": "forget",
                "request_id": rid,
                "outcome": "failed",
                "error": type(e).__name__,  # never the message: it could quote a request value
                "seconds": round(time.time() - t0, 3),
            },
            so,
        )
        lock.release()
        raise
    result.seconds = round(time.time() - t0, 3)
    runlog.append(
        state_uri,
        {
            "event": "end",
            "kind": "forget",
            "request_id": rid,
            "outcome": result.outcome,
            "removed": result.removed,
            "recovered": result.recovered,
            "purged": result.purged,
            "seconds": result.seconds,
        },
        so,
    )
    lock.release()
    return result


def _state(root: str, so: dict[str, Any]) -> Location:
    return Location(join(root, STATE), so)


def _forgotten(root: str, so: dict[str, Any]) -> Location:
    return _state(root, so).join(FORGOTTEN)


def _check_run_state(root: str, so: dict[str, Any]) -> None:
    """A run output whose config keeps its state elsewhere (`output.state_uri`) is refused: the forgotten set must
    live where the next run into it looks (`<ROOT>/_state`)."""
    manifest = committed_manifest(root, so) or {}
    elsewhere = ((manifest.get("config") or {}).get("output") or {}).get("state_uri")
    if elsewhere and elsewhere.rstrip("/") != join(root, STATE):
        raise ConfigError(root, [("output.state_uri", "the run keeps its state outside ROOT; not supported")])


def _forget_locked(root: str, so: dict[str, Any], req: Request, threshold: float, kind: str) -> ForgetResult:
    rid = req.request_id
    recovered = recover_forget(root, so)
    if _forgotten(root, so).join("requests", f"{rid}.json").exists():
        return ForgetResult(rid, "already_applied", recovered=recovered)
    gens = readable_outputs(root, so)
    # targets: rows the request names, in any snapshot; their texts and the request's make the set
    texts = sorted(req.values("text"))
    for uri in gens.values():
        for t in data_tables(uri, so):
            hit = direct_matches(t, req)
            texts += pc.fill_null(t["text"], "").filter(pa.array(hit)).to_pylist()
    # near-copies of near-copies too (connected components, as fuzzy_dedup clusters): grow the set to a fixpoint
    fs = ForgottenSet(threshold=threshold)
    seen: set[str] = set()
    while True:
        new = sorted(set(texts) - seen)
        if not new:
            break
        seen |= set(new)
        sigs, has = minhashes(pa.array(new, pa.large_string()))
        fs.add([h for h in text_hashes(new) if h], sigs[has])
        texts = []
        for uri in gens.values():
            for t in data_tables(uri, so, ["text"]):
                hit = fs.match(t["text"])
                texts += pc.fill_null(t["text"], "").filter(pa.array(hit)).to_pylist()
    fs.add(sorted(req.values("sha256")), np.zeros((0, fs.sigs.shape[1]), np.uint64))
    removed: dict[str, int] = {}
    removed_ids: dict[str, list[str]] = {}
    for sid, uri in gens.items():
        n, ids = 0, []
        for t in data_tables(uri, so, ["id", "text", "meta", "source"]):
            gone = direct_matches(t, req) | fs.match(t["text"])
            n += int(gone.sum())
            ids += [sha(str(i)) for i in t["id"].filter(pa.array(gone)).to_pylist()]
        if n:
            removed[sid], removed_ids[sid] = n, ids
    if not removed and not len(fs.sigs) and not fs.hashes:
        return ForgetResult(rid, "nothing_matched", recovered=recovered)
    previous = read_generations(root, so)["snapshots"] if kind == "refresh" else {}
    pending = {
        "request_id": rid,
        "mode": kind,
        "threshold": threshold,
        "generations": {
            sid: f"g{int(previous.get(sid, {}).get('generation', 'g1')[1:].split('-')[0]) + 1}-{rid}"
            for sid in removed
            if kind == "refresh"
        },
        "sources": {sid: gens[sid] for sid in removed},
        "removed_ids": removed_ids,  # sha256 of ids, for the dedup index
        "removed": removed,
        "hashed_request": req.hashed(),
        "started_at": runlog.now_iso(),
    }
    forgotten = _forgotten(root, so)
    forgotten.makedirs()
    with forgotten.join(f"pending-{rid}.parquet").open("wb") as fh:
        pq.write_table(set_table(list(fs.hashes), fs.sigs), fh)
    forgotten.join("pending.json").write_json(pending)
    if kind == "run":
        if removed:
            stage_run_output(root, so, pending, fs, req)
    else:
        for sid in removed:
            write_generation(root, so, sid, pending, fs, req)
    maybe_fail("forget:after_generations")
    publish_forget(root, so, pending)
    progress("forget %s: removed %s", rid, json.dumps(removed))
    return ForgetResult(rid, "applied", removed, recovered)


def generation_uri(root: str, sid: str, gen: str) -> str:
    return join(root, GEN_DIR, sid, gen)


def write_generation(
    root: str, so: dict[str, Any], sid: str, pending: dict[str, Any], fs: ForgottenSet, req: Request
) -> None:
    """The snapshot's next generation: a committed output holding its current rows but the removed ones."""
    out = generation_uri(root, sid, pending["generations"][sid])
    if committed_manifest(out, so) is not None:
        return
    work = Location(out, so).join(WORK_DIR, pending["request_id"])
    files, manifest, report = kept_rows(pending["sources"][sid], so, sid, pending, fs, req, work)
    commit(out, so, work.uri, files, manifest, report)


def stage_run_output(
    root: str, so: dict[str, Any], pending: dict[str, Any], fs: ForgottenSet, req: Request
) -> None:
    """A run output's kept rows, staged under `_work/<request>/` with `staged.json` written last: from then on a
    crash rolls forward (the old parts may already be deleted by the commit, so the staged rows are the truth)."""
    work = Location(root, so).join(WORK_DIR, pending["request_id"])
    files, manifest, report = kept_rows(root, so, RUN_OUTPUT, pending, fs, req, work)
    work.join(STAGED).write_json({"files": files, "manifest": manifest, "report": report})


def commit_staged(root: str, so: dict[str, Any], rid: str) -> None:
    """Commit a run output's staged rows over it (idempotent: a commit that crashed half-way is redone)."""
    manifest = committed_manifest(root, so)
    if manifest is not None and any(f.get("request_id") == rid for f in manifest.get("forget", [])):
        return
    work = Location(root, so).join(WORK_DIR, rid)
    staged = work.join(STAGED).read_json()
    commit(root, so, work.uri, staged["files"], staged["manifest"], staged["report"])


def kept_rows(
    src_uri: str,
    so: dict[str, Any],
    sid: str,
    pending: dict[str, Any],
    fs: ForgottenSet,
    req: Request,
    work: Location,
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Stage, under `work`, the rows of a committed output but the removed ones; returns what `commit` takes."""
    rid = pending["request_id"]
    src = Location(src_uri, so)
    manifest = committed_manifest(src_uri, so) or {}
    report = src.join("report.json").read_json()
    ids = set(pending["removed_ids"][sid])
    work.remove(recursive=True)
    writer = PartWriter(work.join("g"), pa.schema([]))
    files: list[dict[str, Any]] = []
    gone_rows = 0
    for f in manifest["files"]:
        with src.join(f["path"]).open("rb") as fh:
            t = pq.read_table(fh)
        if f["kind"] == "data":
            keep = ~(direct_matches(t, req) | fs.match(t["text"]))
        else:  # drop log and quarantine rows of a removed document go too (ids, URLs, raw bytes)
            keep = ~np.array([sha(str(i)) in ids for i in t["id"].to_pylist()], bool)
        gone_rows += int((~keep).sum())
        if keep.all():
            work.join("g", f["path"]).write_bytes(src.join(f["path"]).read_bytes())
            files.append({**{k: f[k] for k in ("rows", "bytes", "sha256")}, "path": f"g/{f['path']}"})
        elif keep.any():
            rec = writer.write_part(f["kind"], t.filter(pa.array(keep)))
            files.append({**rec, "path": f"g/{rec['path']}"})
    data_rows = sum(f["rows"] for f in files if f["path"].split("/")[1] == "data")
    published_gone = manifest.get("counts", {}).get("rows_out", 0) - data_rows
    counts = {**manifest.get("counts", {}), "rows_out": data_rows}
    counts["forgotten"] = counts.get("forgotten", 0) + gone_rows  # rows no file holds any more (verify)
    gone = {"published": published_gone, "dropped_or_quarantined": gone_rows - published_gone}
    report = {**report, "rows_out": data_rows, "forgotten": {**report.get("forgotten", {}), rid: gone}}
    info = {"request_id": rid, "at": pending["started_at"], **gone}
    if pending.get("mode", "refresh") == "refresh":
        info["previous_generation"] = src_uri
    new_manifest = {
        **{k: v for k, v in manifest.items() if k != "files"},
        "counts": counts,
        "forget": [*manifest.get("forget", []), info],
    }
    # the run's accounting still holds once the published rows that were forgotten are counted back
    before = sum(g["published"] for g in report["forgotten"].values())
    problems = check_accounting({**report, "rows_out": data_rows + before})
    if problems:
        raise RuntimeError(f"forget: accounting of {sid} does not balance: {'; '.join(problems)}")
    return files, new_manifest, report


def publish_forget(root: str, so: dict[str, Any], pending: dict[str, Any]) -> None:
    """Steps 4 and 5; idempotent, so recovery re-runs it."""
    rid = pending["request_id"]
    if pending.get("mode", "refresh") == "run":
        if pending["removed"]:
            commit_staged(root, so, rid)  # the same folder, its old parts (holding removed rows) deleted
    else:
        _move_pointer(root, so, pending)
    maybe_fail("forget:after_pointer")
    remove_index_entries(root, so, {h for ids in pending["removed_ids"].values() for h in ids})
    forgotten = _forgotten(root, so)
    staged = forgotten.join(f"pending-{rid}.parquet")
    if staged.exists():
        staged.move_to(forgotten.join(f"set-{rid}.parquet"))
    forgotten.join("requests", f"{rid}.json").write_json(
        {
            "request_id": rid,
            "at": pending["started_at"],
            "items": pending["hashed_request"],
            "threshold": pending["threshold"],
            "removed": pending["removed"],
        }
    )
    maybe_fail("forget:after_state")
    forgotten.join("pending.json").remove()


def _move_pointer(root: str, so: dict[str, Any], pending: dict[str, Any]) -> None:
    """`generations.json` (one write: every snapshot switches at once, and the generations it replaces are recorded
    as superseded, awaiting purge), then `latest`."""
    rid = pending["request_id"]
    rec = read_generations(root, so)
    now = runlog.now_iso()
    for sid, gen in pending["generations"].items():
        cur = rec["snapshots"].get(sid, {})
        if cur.get("generation") == gen:
            continue
        rec.setdefault("superseded", []).append(
            {
                "snapshot": sid,
                "path": cur.get("path", f"snapshots/{sid}"),
                "superseded_at": now,
                "superseded_by": f"{GEN_DIR}/{sid}/{gen}",
                "request_id": rid,
                "purged_at": None,
            }
        )
        rec["snapshots"][sid] = {
            "generation": gen,
            "path": f"{GEN_DIR}/{sid}/{gen}",
            "requests": [*cur.get("requests", []), rid],
            "updated_at": now,
        }
    rec["updated_at"] = now
    Location(root, so).join(GENERATIONS).write_json(rec)
    latest = read_latest(root, so)
    if latest and latest.get("snapshot_id") in pending["generations"]:
        sid = latest["snapshot_id"]
        uri = generation_uri(root, sid, pending["generations"][sid])
        marker = Location(uri, so).join(SUCCESS).read_json()
        if latest.get("manifest_sha256") != marker.get("manifest_sha256"):
            Location(root, so).join(LATEST).write_json(
                {
                    **latest,
                    "manifest_sha256": marker.get("manifest_sha256"),
                    "generation": pending["generations"][sid],
                    "uri": uri,
                    "updated_at": now,
                }
            )


def remove_index_entries(root: str, so: dict[str, Any], id_hashes: set[str]) -> int:
    """Drop the entries of removed documents from every dedup index generation (rewritten whole, atomically)."""
    if not id_hashes:
        return 0
    dedup = _state(root, so).join("dedup")
    if not dedup.exists():
        return 0
    gone = 0
    for f in dedup.find(".parquet"):
        with f.open("rb") as fh:
            t = pq.read_table(fh)
        if "id" not in t.column_names:
            continue
        keep = np.array([sha(str(i)) not in id_hashes for i in t["id"].to_pylist()], bool)
        if keep.all():
            continue
        gone += int((~keep).sum())
        sink = pa.BufferOutputStream()
        pq.write_table(t.filter(pa.array(keep)), sink, compression="zstd")
        f.write_bytes(sink.getvalue().to_pybytes())
    return gone


def recover_forget(root: str, so: dict[str, Any]) -> list[str]:
    """Finish or undo a forget that crashed: roll forward when every new generation committed, else back."""
    forgotten = _forgotten(root, so)
    pending = forgotten.join("pending.json").read_json_or_none()
    if not isinstance(pending, dict):
        return []
    rid = pending["request_id"]
    if pending.get("mode", "refresh") == "run":
        # staged.json is written last when staging, and outlives the commit until _SUCCESS: present = roll forward
        work = Location(root, so).join(WORK_DIR, rid)
        manifest = committed_manifest(root, so) or {}
        done = not pending["removed"] or any(f.get("request_id") == rid for f in manifest.get("forget", []))
        moved = work.join(STAGED).exists()
    else:
        done = all(
            committed_manifest(generation_uri(root, sid, gen), so) is not None
            for sid, gen in pending["generations"].items()
        )
        pointer = read_generations(root, so)["snapshots"]
        moved = any(pointer.get(sid, {}).get("generation") == g for sid, g in pending["generations"].items())
    if done or moved:
        publish_forget(root, so, pending)
        action = f"rolled forward forget {rid}"
    else:
        for sid, gen in pending["generations"].items():
            Location(generation_uri(root, sid, gen), so).remove(recursive=True)
        if pending.get("mode") == "run":
            Location(root, so).join(WORK_DIR, rid).remove(recursive=True)
        forgotten.join(f"pending-{rid}.parquet").remove()
        forgotten.join("pending.json").remove()
        action = f"rolled back forget {rid}"
    progress("forget recovery: %s", action)
    return [action]


def verify_forgotten(root: str, so: dict[str, Any] | None = None) -> list[str]:
    """Rows of a current generation that match a forgotten item: by text hash or signature (the persisted set),
    or by the hashed id, URL, URL prefix or domain of an applied request. Empty = none."""
    so = so or {}
    forgotten = _forgotten(root, so)
    fs = load_forgotten(_state(root, so), _threshold(forgotten))
    hashed: dict[str, set[str]] = {k: set() for k in KINDS}
    for f in forgotten.join("requests").find(".json") if forgotten.join("requests").exists() else []:
        for item in f.read_json().get("items", []):
            hashed[item["kind"]].add(item["sha256"])
    problems = []
    for sid, uri in readable_outputs(root, so).items():
        for t in data_tables(uri, so, ["id", "text", "meta", "source"]):
            hit = fs.match(t["text"])
            hit |= np.array([sha(str(i)) in hashed["id"] for i in t["id"].to_pylist()], bool)
            urls = pc.fill_null(row_url(t), "").to_pylist()
            hit |= np.array([sha(u) in hashed["url"] for u in urls], bool)
            if hashed["url_prefix"]:
                hit |= np.array(
                    [any(sha(u[:k]) in hashed["url_prefix"] for k in range(1, len(u) + 1)) for u in urls]
                )
            doms = pc.fill_null(row_domain(t), "").to_pylist()
            hit |= np.array([sha(d) in hashed["domain"] for d in doms], bool)
            if hit.any():
                problems.append(f"{sid}: {int(hit.sum())} row(s) match forgotten items")
    return problems + purge_problems(root, so)[0]


def _threshold(forgotten: Location) -> float:
    ts = (
        [f.read_json().get("threshold", DEFAULT_THRESHOLD) for f in forgotten.join("requests").find(".json")]
        if forgotten.join("requests").exists()
        else []
    )
    return min(ts) if ts else DEFAULT_THRESHOLD


# --- purge: deleting the rows of superseded generations --------------------------------------------------------


def _generation_path_ok(path: Any) -> bool:
    """Only `snapshots/<id>` or `generations/<id>/<gen>`: generations.json is data, and must not steer a delete
    elsewhere."""
    if not isinstance(path, str):
        return False
    parts = path.split("/")
    shape = (len(parts) == 2 and parts[0] == "snapshots") or (len(parts) == 3 and parts[0] == GEN_DIR)
    return shape and all(p not in ("", ".", "..") for p in parts)


def _row_files(folder: Location) -> list[Location]:
    return [f for d in PUBLISHED_DIRS for f in folder.join(d).find()]


def superseded(root: str, so: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Generations a forget superseded (never a current one), with the row files they still hold and their bytes."""
    so = so or {}
    rec = read_generations(root, so)
    current = {g.get("path") for g in rec["snapshots"].values()}
    out = []
    for e in rec.get("superseded", []):
        if not _generation_path_ok(e.get("path")) or e["path"] in current:
            continue
        folder = Location(root, so).join(e["path"])
        files = _row_files(folder)
        out.append({**e, "uri": folder.uri, "row_files": len(files), "bytes": sum(f.size() for f in files)})
    return out


def age_s(entry: dict[str, Any], now: float) -> float:
    return now - dt.datetime.fromisoformat(entry["superseded_at"]).timestamp()


def purge_superseded(
    root: str,
    so: dict[str, Any] | None = None,
    min_age_s: float = 0.0,
    request_id: str | None = None,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """Delete the row files (data/, quarantine/, droplog/) of superseded generations at least `min_age_s` old (of
    one request's, if given). Why: until then an erased document is still on disk. Each folder gets `_PURGED`
    (its tombstone) before its `_SUCCESS` goes and then its row files, so nothing readable promises rows that are
    gone; `generations.json` records `purged_at` last, and an interrupted purge is simply done again. Call it under
    the lease lock. Returns the purged entries."""
    so = so or {}
    if not Location(root, so).join(GENERATIONS).exists():
        return []  # a run output: its old parts went with the commit
    now = time.time() if now is None else now
    todo = [
        e
        for e in superseded(root, so)
        if (e["row_files"] or not e.get("purged_at"))
        and age_s(e, now) >= min_age_s
        and (request_id is None or e.get("request_id") == request_id)
    ]
    if not todo:
        return []
    at = runlog.now_iso()
    for e in todo:
        folder = Location(e["uri"], so)
        folder.join(PURGED).write_json(
            {
                "purged_at": at,
                "request_id": e.get("request_id"),
                "superseded_by": join(root, e["superseded_by"]),
            }
        )
        folder.join(SUCCESS).remove()  # unpublished first: its manifest lists files about to go
        for f in _row_files(folder):
            f.remove()
    rec = read_generations(root, so)
    done = {e["path"] for e in todo}
    for e in rec.get("superseded", []):
        if e.get("path") in done:
            e["purged_at"] = e.get("purged_at") or at
    Location(root, so).join(GENERATIONS).write_json(rec)
    progress("forget: purged the rows of %d superseded generation(s)", len(todo))
    return todo


def purge_problems(root: str, so: dict[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """(problems, awaiting): a generation recorded as purged that still holds row files or a `_SUCCESS` is a
    problem; a superseded one still holding rows is awaiting its purge (the grace period), reported, not failed."""
    problems, awaiting = [], []
    for e in superseded(root, so):
        folder = Location(e["uri"], so or {})
        if e.get("purged_at") and (e["row_files"] or folder.join(SUCCESS).exists()):
            problems.append(f"{e['path']}: recorded as purged but still holds rows or a {SUCCESS}")
        elif e["row_files"]:
            awaiting.append(
                f"{e['path']}: superseded at {e['superseded_at']} by {e['superseded_by']}, still holds "
                f"{e['row_files']} row file(s), {e['bytes']} bytes: awaiting purge (`refinery gc ROOT --yes`)"
            )
    return problems, awaiting
