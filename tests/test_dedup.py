"""Dedup: MinHash helpers (no Ray), and exact/fuzzy dedup end to end through the pipeline on real SPDX texts.

Expected duplicates are computed here by brute force with a plain-Python reference (word 5-gram sets, exact
Jaccard), independent of the vectorized hashing under test.
"""

from __future__ import annotations

import gzip
import json
import re
import unicodedata
from itertools import combinations
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from stages.dedup import minhash as mh
from tests.conftest import FIXTURES, read_output

SLICE = FIXTURES / "dedup" / "spdx_slice.jsonl.gz"


def load_docs() -> list[dict]:
    with gzip.open(SLICE, "rt") as f:
        return [json.loads(line) for line in f]


def ref_shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", text).lower()).split()
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def ref_jaccard(a: str, b: str) -> float:
    x, y = ref_shingles(a), ref_shingles(b)
    return len(x & y) / len(x | y) if x | y else 1.0


def exact_norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


# ---------------------------------------------------------------------------------------------- unit (no Ray)


def test_shingles_match_reference_sets():
    docs = load_docs()[:12]
    sb = mh.shingle_texts(pa.array([d["text"] for d in docs]))
    for i, d in enumerate(docs):
        assert len(sb.doc(i)) == len(ref_shingles(d["text"]))  # no hash collisions, same tokenization
    for i, j in combinations(range(len(docs)), 2):
        got = mh.jaccard_sorted(sb.doc(i), sb.doc(j))
        assert got == pytest.approx(ref_jaccard(docs[i]["text"], docs[j]["text"]), abs=1e-12)


def test_short_and_empty_documents():
    sb = mh.shingle_texts(pa.array(["", None, "one two", "a b c d e f", "¡Hola!  HOLA"]))
    assert [len(sb.doc(i)) for i in range(5)] == [0, 0, 1, 2, 1]
    sig = mh.signatures(sb, 2, 3)
    assert (sig[0] == mh.M64).all() and (sig[1] == mh.M64).all()


def test_signature_is_min_of_hash_family_and_batch_independent():
    docs = load_docs()
    texts = [d["text"] for d in docs[:20]]
    sb = mh.shingle_texts(pa.array(texts))
    sig = mh.signatures(sb)
    a, b = mh.permutations(112, 1)
    x = sb.doc(3)
    with np.errstate(over="ignore"):
        ref = (x[:, None] * a[None, :] + b[None, :]).min(axis=0)
    assert np.array_equal(sig[3], ref)
    # a document's signature does not depend on its batch neighbours or on chunking
    alone = mh.signatures(mh.shingle_texts(pa.array(texts[3:4])))
    assert np.array_equal(alone[0], sig[3])
    a2, b2 = mh.permutations(112, 1)
    assert np.array_equal(mh.minhash_cpu(sb.values, sb.offsets, a2, b2, chunk=7), sig)


def test_signature_agreement_estimates_jaccard():
    docs = load_docs()
    sb = mh.shingle_texts(pa.array([d["text"] for d in docs]))
    sig = mh.signatures(sb)
    errs = []
    for i, j in combinations(range(len(docs)), 2):
        if len(sb.doc(i)) and len(sb.doc(j)):
            errs.append(abs((sig[i] == sig[j]).mean() - mh.jaccard_sorted(sb.doc(i), sb.doc(j))))
    assert np.mean(errs) < 0.03  # unbiased estimator, sd ≤ 0.05 at K=112


def test_band_keys_equal_iff_band_values_equal():
    rng = np.random.default_rng(0)
    sig = rng.integers(0, 1 << 63, size=(4, 16), dtype=np.uint64)
    sig[1, :8] = sig[0, :8]  # doc 1 shares band 0 with doc 0
    keys = mh.band_keys(sig, 2, 8)
    assert keys[0, 0] == keys[1, 0] and keys[0, 1] != keys[1, 1]
    assert len(set(keys[:, 0].tolist()) | set(keys[:, 1].tolist())) == 7  # bands never collide across index


def test_s_curve_and_threshold():
    assert mh.implied_threshold(14, 8) == pytest.approx((1 / 14) ** (1 / 8))
    assert 0.71 < mh.implied_threshold(14, 8) < 0.73
    assert mh.s_curve(0.9, 14, 8) > 0.99 and mh.s_curve(0.5, 14, 8) < 0.06


def test_signed_min_trick_used_by_gpu_path():
    """The GPU path keeps uint64 values in int64 and takes the unsigned min as a signed min of x ^ 2^63."""
    rng = np.random.default_rng(1)
    u = rng.integers(0, 1 << 64, size=(1000, 5), dtype=np.uint64, endpoint=False)
    flipped = (u ^ np.uint64(1 << 63)).view(np.int64)
    back = (flipped.min(axis=0).view(np.uint64)) ^ np.uint64(1 << 63)
    assert np.array_equal(back, u.min(axis=0))


HOSTILE = [
    "",
    None,
    "one",
    "   ",
    "¡Hola!  HOLA",
    "ﬁnance ２０２４ Ⅻ café CAFÉ naïve",  # NFKC folds ligatures, full-width digits, Roman numerals
    "İstanbul ΣΊΣΥΦΟΣ straße",
    "tab\tsep\nnew-line_under_score a.b,c;d",
    "日本語のテキスト、句読点。 and ASCII",
    "x" * 5000,
]


def real_texts() -> list[str | None]:
    """SPDX licences (ASCII-heavy), lingua sentences in many scripts, and edge cases."""
    with gzip.open(FIXTURES / "langid" / "lingua_sentences_slice.jsonl.gz", "rt") as f:
        lingua = [json.loads(line)["text"] for line in f]
    return [d["text"] for d in load_docs()] + lingua + HOSTILE


def test_token_rule_matches_words_of_normalized_text():
    """`tokenize_bytes` on prepared texts (ASCII as is, the rest normalized) gives exactly the whitespace-split
    words of the fully normalized texts, hashed the same way."""
    import pyarrow.compute as pc

    texts = pa.array(real_texts(), pa.string())
    tok, off = mh.tokenize_bytes(*mh.prepare_texts(texts))
    words = pc.utf8_split_whitespace(mh.normalize_for_shingles(texts))
    for i, w in enumerate(words.to_pylist()):
        # splitting "" gives one empty word; the old tokenizer nulled those first
        w = [x for x in w or [] if x]
        expect = mh.hash_strings(pa.array(w, pa.string())) if w else np.zeros(0, np.uint64)
        assert np.array_equal(tok[off[i] : off[i + 1]], expect), (i, w[:5])


def test_torch_text_to_signatures_bit_identical_on_cpu():
    """The GPU kernel (tokens, shingles, permutations, min: all in torch) on torch's CPU device gives the numpy
    path's signatures bit for bit, across chunk and group boundaries and in a stream of batches."""
    pytest.importorskip("torch")
    from stages.dedup.minhash_gpu import TorchMinHash

    texts = real_texts()
    arr = pa.array(texts, pa.string())
    ref = mh.signatures(mh.shingle_texts(arr), 14, 8, 1)
    a, b = mh.permutations(112, 1)
    # small chunks and blocks: many chunks (one document longer than a chunk) and many groups per chunk
    hasher = TorchMinHash(a, b, 5, "cpu", chunk_bytes=4096, cells=1 << 16)
    got = hasher.signatures(*mh.prepare_texts(arr))
    assert np.array_equal(got, ref)
    assert (got[len(texts) - len(HOSTILE)] == mh.M64).all()  # "" has no shingles
    halves = [texts[: len(texts) // 2], texts[len(texts) // 2 :]]
    many = list(hasher.signatures_many(mh.prepare_texts(pa.array(h, pa.string())) for h in halves))
    assert np.array_equal(np.concatenate(many), ref)
    # the signature step alone, as used on given shingles
    from stages.dedup.minhash_gpu import minhash_gpu

    sb = mh.shingle_texts(arr)
    assert np.array_equal(minhash_gpu(sb.values, sb.offsets, a, b, device="cpu"), ref)


def test_gpu_signatures_bit_identical():
    if not mh.gpu_available():
        pytest.skip("no CUDA device (torch/CuPy)")
    from stages.dedup.minhash_gpu import minhash_gpu

    sb = mh.shingle_texts(pa.array([d["text"] for d in load_docs()]))
    a, b = mh.permutations(112, 1)
    assert np.array_equal(
        minhash_gpu(sb.values, sb.offsets, a, b), mh.minhash_cpu(sb.values, sb.offsets, a, b)
    )


def test_exact_keys_normalization():
    from stages.dedup.exact import ExactDedupParams, exact_keys, normalize_url

    t = pa.table(
        {
            "id": ["a", "b", "c", "d", "e", "f"],
            "text": ["Hello  World", "hello world", "hello, world", "Ｈｅｌｌｏ world", "", "x"],
            "modality": ["text", "text", "text", "text", "text", "image"],
            "media": [None] * 5 + [{"sha256": "abc"}],
        }
    )
    k, reason = exact_keys(t, ExactDedupParams())
    k = k.to_pylist()
    assert k[0] == k[1] == k[3] and k[2] != k[0] and k[4] is None and k[5] is not None
    k2, _ = exact_keys(t, ExactDedupParams(punctuation=True))
    assert k2.to_pylist()[2] == k2.to_pylist()[0]
    assert reason.to_pylist()[5] == "media_dup"
    assert normalize_url("HTTP://Example.COM:80/a/#frag") == normalize_url("http://example.com/a")
    assert normalize_url("not a url") is None


# ---------------------------------------------------------------------------------------------- end to end


def _cfg(inp: Path | str, out: Path, stages: list[dict], state: Path | None = None) -> dict:
    cfg = {"input": {"uri": str(inp), "id_field": "id"}, "output": {"uri": str(out)}, "stages": stages}
    if state is not None:
        cfg["output"]["state_uri"] = str(state)
    return cfg


def _rows(out) -> dict[str, dict]:
    table, _ = read_output(out)
    return {
        r["id"]: r
        for r in table.select(
            ["id", "dup", *(["flagged"] if "flagged" in table.column_names else [])]
        ).to_pylist()
    }


def test_exact_dedup_end_to_end(run_config, tmp_path):
    docs = load_docs()
    res = run_config(_cfg(SLICE, tmp_path / "out", [{"stage": "exact_dedup", "params": {"partitions": 3}}]))
    rows = _rows(tmp_path / "out")
    groups: dict[str, list[int]] = {}
    for pos, d in enumerate(docs):
        groups.setdefault(exact_norm(d["text"]), []).append(pos)
    assert sum(len(v) > 1 for v in groups.values()) >= 3
    assert len(rows) == len(groups)  # one row kept per group
    for members in groups.values():
        # default priority: longest raw text, then earliest in the input
        best = min(members, key=lambda p: (-len(docs[p]["text"]), p))
        kept_id = docs[best]["id"]
        assert kept_id in rows and not any(docs[p]["id"] in rows for p in members if p != best)
        assert rows[kept_id]["dup"] == {"cluster_id": kept_id, "cluster_size": len(members), "kept": True}
    st = res.report["stages"][0]
    assert st["dropped"] == {"exact_dup": len(docs) - len(groups)}
    assert res.report["rows_out"] == len(groups)


def test_fuzzy_dedup_end_to_end_annotate_and_idempotent(run_config, tmp_path):
    docs = load_docs()
    texts = {d["id"]: d["text"] for d in docs}
    stage = {"stage": "fuzzy_dedup", "params": {"partitions": 4}}
    run_config(_cfg(SLICE, tmp_path / "drop", [stage]))
    kept = _rows(tmp_path / "drop")
    dropped = set(texts) - set(kept)
    assert dropped
    # recall: every pair with J >= 0.9 is no longer both kept (the S-curve gives > 99.9% per pair at 0.9)
    ids = sorted(texts)
    pairs = {(a, b): ref_jaccard(texts[a], texts[b]) for a, b in combinations(ids, 2)}
    for (a, b), j in pairs.items():
        if j >= 0.9:
            assert not (a in kept and b in kept), (a, b, j)
    # precision: every removed doc has a partner with exact Jaccard >= the verification threshold (0.7)
    for d in dropped:
        assert max(j for (a, b), j in pairs.items() if d in (a, b)) >= 0.7, d
    # cluster sizes add up: the kept rows' cluster sizes account for every input document
    assert sum(r["dup"]["cluster_size"] for r in kept.values()) == len(texts)
    assert all(r["dup"]["kept"] and r["dup"]["cluster_id"] == i for i, r in kept.items())

    # annotate keeps every row, flags exactly the rows `drop` removed, and gives the same clusters; this run
    # also declares a GPU, which the test cluster lacks: the map step falls back to CPUs (rather than wait for one)
    stage_a = {
        "stage": "fuzzy_dedup",
        "params": {"partitions": 2, "action": "annotate"},
        "resources": {"num_gpus": 1},
    }
    res = run_config(_cfg(SLICE, tmp_path / "ann", [stage_a]))
    ann = _rows(tmp_path / "ann")
    assert set(ann) == set(texts)
    flagged = {i for i, r in ann.items() if r.get("flagged")}
    assert flagged == dropped
    assert all(ann[i]["flagged"] == ["fuzzy_dedup:near_dup"] for i in flagged)
    assert {i: r["dup"] for i, r in ann.items() if i in kept} == {i: r["dup"] for i, r in kept.items()}
    assert res.report["stages"][0]["flagged"] == {"near_dup": len(dropped)}

    # idempotence: the second run used other partitioning; its kept rows (dup.kept) and cluster ids match the first
    assert {i for i, r in ann.items() if r["dup"]["kept"]} == set(kept)
    assert all(
        ann[i]["dup"]["cluster_id"] == kept[ann[i]["dup"]["cluster_id"]]["dup"]["cluster_id"] for i in ann
    )


def _write_jsonl(path: Path, docs: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    return path


def test_against_index_drops_duplicates_of_published(run_config, tmp_path):
    docs = load_docs()
    first, rest = docs[::2], docs[1::2]
    state = tmp_path / "state"
    stages = [
        {"stage": "exact_dedup", "params": {"against_index": True, "partitions": 2}},
        {"stage": "fuzzy_dedup", "params": {"against_index": True, "partitions": 2}},
    ]
    r1 = run_config(
        _cfg(_write_jsonl(tmp_path / "in1" / "a.jsonl.gz", first), tmp_path / "out1", stages, state)
    )
    kept1 = _rows(tmp_path / "out1")
    # the index generations of run 1 exist and were committed after the output
    from refinery.state import committed_generations

    assert committed_generations(str(state / "dedup" / "exact_dedup"))
    assert committed_generations(str(state / "dedup" / "fuzzy_dedup"))
    assert (state / "dedup" / "fuzzy_dedup" / f"gen-{r1.run_id}" / "_COMMITTED").exists()

    # run 2: new docs plus an exact copy and a near copy (one word changed) of published documents
    pub = sorted(kept1, key=lambda i: -len(next(d["text"] for d in first if d["id"] == i)))[:2]
    src = {d["id"]: d["text"] for d in first}
    exact_copy = {"id": "copy-exact", "name": "x", "text": src[pub[0]]}
    words = src[pub[1]].split(" ")
    words[len(words) // 2] = "CHANGED"
    near_copy = {"id": "copy-near", "name": "x", "text": " ".join(words)}
    fresh = [d for d in rest if max(ref_jaccard(d["text"], t) for t in src.values()) < 0.5]
    assert fresh
    r2 = run_config(
        _cfg(
            _write_jsonl(tmp_path / "in2" / "b.jsonl.gz", [exact_copy, near_copy, *fresh]),
            tmp_path / "out2",
            stages,
            state,
        )
    )
    kept2 = _rows(tmp_path / "out2")
    assert "copy-exact" not in kept2 and "copy-near" not in kept2
    assert {d["id"] for d in fresh} <= set(kept2) | {
        d["id"] for d in fresh if any(ref_jaccard(d["text"], e["text"]) >= 0.7 for e in fresh if e is not d)
    }
    by = {s["name"]: s for s in r2.report["stages"]}
    assert by["exact_dedup"]["dropped"].get("dup_of_published") == 1
    assert by["fuzzy_dedup"]["dropped"].get("dup_of_published") == 1
    assert len(committed_generations(str(state / "dedup" / "exact_dedup"))) >= 2
