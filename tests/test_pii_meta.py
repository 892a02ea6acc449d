"""`pii` on the `meta` column, the one-text helper, and `refinery audit-pii` on meta and the quarantine.

Hostile-input testing found `text` scrubbed but `meta` (author_email, phone, a URL with ``?email=``, a WARC
``<title>`` holding an e-mail) committed as it came, and an audit that called the output clean. PII values here
are real labelled values and sentences of tests/fixtures/pii_text; the web records are the real fixtures.
"""

from __future__ import annotations

import gzip
import io
import json
from functools import cache
from pathlib import Path
from urllib.parse import quote, quote_plus

import orjson
import pyarrow as pa
import pytest

from refinery.schema import row_domain
from stages.pii.scrub import Pii, resolve_model
from tests.test_readers_web import WEB, live, read_rows

FIX = Path(__file__).parent / "fixtures"
MODEL = resolve_model("auto")
MACHINE_KEYS = ("warc_date", "warc_record_id", "http_status", "content_type", "charset", "extractor", "lang")


@cache
def _labelled() -> list[dict]:
    with gzip.open(FIX / "pii_text" / "presidio_synth_v2_first500.jsonl.gz", "rt") as f:
        return [json.loads(line) for line in f]


def value(kind: str, i: int = 0) -> str:
    """The i-th labelled value of a type in the PII fixture."""
    found = [r["text"][s["start"] : s["end"]] for r in _labelled() for s in r["spans"] if s["type"] == kind]
    return found[i]


def sentence(kind: str, i: int = 0) -> str:
    """The i-th short fixture sentence holding a value of that type."""
    return [
        r["text"] for r in _labelled() if len(r["text"]) < 100 and any(s["type"] == kind for s in r["spans"])
    ][i]


def scrub(params: dict, metas: list) -> tuple[list, list[dict], pa.Table]:
    """Run the stage on rows with these metas (dicts are written like the readers write them: orjson)."""
    raw = [orjson.dumps(m).decode() if isinstance(m, dict) else m for m in metas]
    n = len(raw)
    t = pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "text": pa.array(["plain text"] * n, pa.large_string()),
            "meta": pa.array(raw, pa.large_string()),
        }
    )
    out, _ = Pii(params).process(t)
    return out["meta"].to_pylist(), out["pii"].to_pylist(), out


def gone(values: list[str], blob: str) -> bool:
    return not any(v in blob or quote(v) in blob or quote_plus(v) in blob for v in values)


# ------------------------------------------------------------------ the four leaks


def test_the_four_leaks_are_gone_from_meta_and_counted():
    email, email2, phone = value("EMAIL_ADDRESS", 0), value("EMAIL_ADDRESS", 1), value("PHONE_NUMBER", 0)
    title = sentence("EMAIL_ADDRESS", 2)  # a real sentence holding an e-mail, as a page title
    metas = [
        {
            "author_email": email,
            "phone": phone,
            "url": f"https://forum.example.net/post?id=7&email={email2}",
            "title": title,
            "warc_date": "2024-05-18T01:58:10Z",
            "views": 12,
        },
        # percent-encoded e-mail in the query, values nested in objects and lists
        {
            "url": f"https://forum.example.net/p?email={quote(email2)}",
            "contact": {"emails": [email], "tel": phone},
        },
        None,
    ]
    out, pii, _ = scrub({"ner_model": None}, metas)
    for before, after in zip(metas[:2], out[:2], strict=True):
        assert gone([email, email2, phone], after), after
        parsed = json.loads(after)
        assert list(parsed) == list(before)  # key order kept, compact JSON like the readers'
        assert after == orjson.dumps(parsed).decode()
    first = json.loads(out[0])
    assert first["author_email"] == "<EMAIL_ADDRESS>" and first["phone"] == "<PHONE_NUMBER>"
    assert first["url"] == "https://forum.example.net/post?id=7&email=<EMAIL_ADDRESS>"
    assert (
        "<EMAIL_ADDRESS>" in first["title"]
        and first["warc_date"] == "2024-05-18T01:58:10Z"
        and first["views"] == 12
    )
    assert json.loads(out[1])["contact"] == {"emails": ["<EMAIL_ADDRESS>"], "tel": "<PHONE_NUMBER>"}
    assert out[2] is None
    # Meta findings are in the per-type counts and `total`, and `meta_total` says how many of them came from meta.
    assert pii[0]["email_address"] == 3 and pii[0]["phone_number"] == 1
    assert (
        pii[0]["meta_total"] == pii[0]["total"] == 4
        and pii[1]["meta_total"] == 3
        and pii[2]["meta_total"] == 0
    )


def test_warc_record_title_and_target_uri_are_scrubbed_machine_fields_kept(tmp_path):
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    email, phone = value("EMAIL_ADDRESS", 3), value("PHONE_NUMBER", 1)
    title = sentence("EMAIL_ADDRESS", 1)
    page = gzip.decompress((WEB / "escopete_wikipedia.html.gz").read_bytes()).decode()
    page = page.replace(page[page.index("<title>") : page.index("</title>")], f"<title>{title}", 1)
    url = f"https://an.wikipedia.org/wiki/Escopete?contact={quote(email)}&tel={phone}"
    warc = tmp_path / "leaky.warc.gz"
    with warc.open("wb") as f:
        w = WARCWriter(f, gzip=True)
        body = page.encode()
        hh = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
        w.write_record(w.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=hh))
    rows = live(read_rows(warc))
    assert len(rows) == 1 and title in rows[0]["meta"] and email not in rows[0]["text"]
    before = json.loads(rows[0]["meta"])
    out, pii, table = scrub({"ner_model": None}, [rows[0]["meta"]])
    after = json.loads(out[0])
    assert gone([email, phone, title], out[0])
    assert after["url"] == "https://an.wikipedia.org/wiki/Escopete?contact=<EMAIL_ADDRESS>&tel=<PHONE_NUMBER>"
    assert "<EMAIL_ADDRESS>" in after["title"]
    assert {k: after[k] for k in MACHINE_KEYS if k in before} == {
        k: before[k] for k in MACHINE_KEYS if k in before
    }
    assert row_domain(table).to_pylist() == ["an.wikipedia.org"]
    assert pii[0]["meta_total"] == 3


@pytest.mark.skipif(MODEL is None, reason="no spaCy English model installed")
def test_person_names_in_title_and_author_are_caught_with_the_model():
    title = "Bryan Maclean's killers sentenced to life in prison"  # a real fixture sentence, headline-shaped
    assert title in [r["text"] for r in _labelled()]
    authors = [
        "Caitlyn Schulz",
        "Nicole Mahler",
    ]  # fixture names (sentences 'It's under … Caitlyn Schulz', …)
    assert all(any(a in r["text"] for r in _labelled()) for a in authors)
    out, pii, _ = scrub({}, [{"title": title, "author": authors[0]}, {"byline": {"name": authors[1]}}])
    assert gone(["Bryan Maclean", *authors], "".join(out)), out
    assert json.loads(out[0])["title"] == "<PERSON> killers sentenced to life in prison"
    assert pii[0]["person"] >= 2 and pii[1]["person"] == 1


# ------------------------------------------------------------------ configuration


def test_per_field_config_and_scrub_meta_off():
    email, phone = value("EMAIL_ADDRESS", 4), value("PHONE_NUMBER", 2)
    date = "Tue Nov 19 2019 05:44:06 GMT+0000"  # a real `date` meta value of the article-extraction benchmark
    meta = {"author_email": email, "phone": phone, "date": date}
    raw = orjson.dumps(meta).decode()

    only, _, _ = scrub({"ner_model": None, "meta_fields": ["author_email"]}, [meta])
    assert json.loads(only[0]) == {"author_email": "<EMAIL_ADDRESS>", "phone": phone, "date": date}

    excl, _, _ = scrub({"ner_model": None, "meta_exclude": ["phone"]}, [meta])
    got = json.loads(excl[0])
    assert got["author_email"] == "<EMAIL_ADDRESS>" and got["phone"] == phone
    # `date` is excluded by default because the phone rule misfires on such strings; clearing the list shows it.
    assert got["date"] != date
    default, _, _ = scrub({"ner_model": None}, [meta])
    assert json.loads(default[0])["date"] == date

    off, pii, _ = scrub({"ner_model": None, "scrub_meta": False}, [meta])
    assert off == [raw] and pii[0]["meta_total"] == 0 and pii[0]["total"] == 0
    with pytest.raises(ValueError):
        Pii({"meta_fieldz": ["x"]})


def test_url_hosts_survive_and_only_the_pii_in_them_changes():
    email, phone = value("EMAIL_ADDRESS", 5), value("PHONE_NUMBER", 3)
    user, domain = email.split("@")
    urls = [
        f"https://shop.example.com/orders?email={email}&x=1#top",
        f"http://{user}@{domain}/profile",  # user info before the host: scrubbed, the host stays
        f"https://203.0.113.77:8080/u?tel={phone}",  # an IP host is the server's, kept
        f"https://www.example.org/search?q={quote_plus(sentence('EMAIL_ADDRESS', 0))}",
        f"HTTPS://Example.COM?email={quote(email)}",
    ]
    out, pii, table = scrub({"ner_model": None}, [{"url": u} for u in urls])
    after = [json.loads(m)["url"] for m in out]
    before_hosts = row_domain(
        pa.table({"meta": [orjson.dumps({"url": u}).decode() for u in urls]})
    ).to_pylist()
    assert row_domain(table).to_pylist() == before_hosts and None not in before_hosts
    assert gone([email, user, phone], "".join(after)), after
    assert after[0] == "https://shop.example.com/orders?email=<EMAIL_ADDRESS>&x=1#top"
    assert after[1] == f"http://<EMAIL_ADDRESS>@{domain}/profile"
    assert after[2] == "https://203.0.113.77:8080/u?tel=<PHONE_NUMBER>"
    assert after[4] == "HTTPS://Example.COM?email=<EMAIL_ADDRESS>"
    assert all(p["meta_total"] == 1 for p in pii)


def test_real_web_meta_keeps_its_machine_data_and_loses_planted_pii():
    """False-positive check on every meta of the real web fixtures (WARC, WET, ARC, HTML, images, audio): nothing
    there is personal data, so no original value may change; a planted e-mail in each row must go."""
    rows = [
        r
        for p in sorted(WEB.iterdir())
        if p.is_dir() or p.name.endswith((".gz", ".arc"))
        for r in live(read_rows(p))
        if r["meta"] and ".wat" not in p.name
    ]
    assert len(rows) >= 25
    email = value("EMAIL_ADDRESS", 6)
    metas = [{**json.loads(r["meta"]), "author_email": email} for r in rows]
    n_values = sum(isinstance(v, str) for m in metas for v in m.values()) - len(metas)
    for params in ({"ner_model": None}, {}) if MODEL else ({"ner_model": None},):
        out, _, table = scrub(params, metas)
        changed = []
        for before, after in zip(metas, out, strict=True):
            assert email not in after
            got = json.loads(after)
            assert got.pop("author_email") == "<EMAIL_ADDRESS>"
            changed += [k for k in got if got[k] != before[k]]
        if "ner_model" in params:
            assert changed == [], changed  # patterns: 0 changed of n_values original string values
        else:
            # NER also sees titles; it may tag words of real titles (measured: 4 of the fixtures' titles,
            # docs/evaluation/pii.md) but never touches ids, dates, content types or URLs.
            assert set(changed) <= {"title"} and len(changed) <= 6, changed
        assert (
            row_domain(table).to_pylist()
            == row_domain(pa.table({"meta": [r["meta"] for r in rows]})).to_pylist()
        )
    assert n_values > 100


# ------------------------------------------------------------------ the one-text helper


def test_scrub_text_patterns_only_for_raw_records():
    email, phone = value("EMAIL_ADDRESS", 7), value("PHONE_NUMBER", 4)
    broken = (
        b'{"id": "bad", "text": "write to ' + email.encode() + b" or call " + phone.encode() + b" \xff\xfe"
    )
    scrubber = Pii.patterns_only({"operators": {"PHONE_NUMBER": "mask"}})
    assert scrubber.stateful is False  # nothing to load: runs as plain tasks, and fast
    text = scrubber.scrub_text(broken.decode("utf-8", errors="replace"))
    assert email not in text and phone not in text
    assert "<EMAIL_ADDRESS>" in text and "*" * 3 in text and text.endswith("\ufffd\ufffd")
    assert scrubber.model is None and scrubber.nlp is None
    assert scrubber.scrub_texts([sentence("PHONE_NUMBER", 0), None, ""])[1:] == [None, ""]
    if MODEL:  # the same helper with the configured NER model catches names too
        assert "Caitlyn Schulz" not in Pii().scrub_text("Maybe it's under Caitlyn Schulz")


# ------------------------------------------------------------------ audit-pii


def test_audit_finds_meta_and_quarantine_pii_that_the_text_only_audit_called_clean(
    run_config, tmp_path, capsys
):
    from jobs.cli import main
    from jobs.commands.audit_pii import audit
    from tests.conftest import read_output

    email, email2, phone = value("EMAIL_ADDRESS", 8), value("EMAIL_ADDRESS", 9), value("PHONE_NUMBER", 5)
    texts = [
        json.loads(line)["text"]
        for line in (FIX / "foundation" / "docs_a.jsonl").read_text().splitlines()[:4]
    ]
    src = tmp_path / "in.jsonl"
    with src.open("w") as f:
        for i, text in enumerate(texts):
            f.write(
                json.dumps(
                    {
                        "id": f"doc{i}",
                        "text": text,
                        "author_email": email,
                        "phone": phone,
                        "url": f"https://blog.example.com/p/{i}?email={quote(email2)}",
                        "title": sentence("EMAIL_ADDRESS", i),
                    }
                )
                + "\n"
            )
        f.write(
            '{"id": "bad", "text": "reach me at ' + email + "\n"
        )  # broken: quarantined with its raw bytes
    base = {"input": {"uri": str(src), "format": "jsonl", "id_field": "id"}, "ray": {"batch_rows": 2}}
    raw = run_config({**base, "output": {"uri": str(tmp_path / "raw")}, "stages": []})
    res = audit(raw.output_uri)
    assert not res["clean"]  # the text-only audit called this output clean
    assert res["by_column"]["text"]["clean"]  # its text holds nothing ...
    meta = res["by_column"]["meta"]  # ... while every row's meta leaks
    assert meta["residual"]["EMAIL_ADDRESS"] == 12 and meta["residual"]["PHONE_NUMBER"] >= 4
    assert meta["row_ids"]["EMAIL_ADDRESS"] == [f"doc{i}" for i in range(4)]
    assert res["residual"] == {
        k: res["by_column"]["text"]["residual"][k] + v for k, v in meta["residual"].items()
    }
    q = res["quarantine"]
    assert q["files"] == 1 and q["rows"] == 1 and q["residual"]["EMAIL_ADDRESS"] == 1 and not q["clean"]
    capsys.readouterr()
    assert main(["audit-pii", raw.output_uri]) == 3
    printed = capsys.readouterr().out
    assert json.loads(printed)["by_column"]["meta"]["row_ids"]["PHONE_NUMBER"]
    assert gone([email, email2, phone], printed)

    scrubbed = run_config(
        {
            **base,
            "output": {"uri": str(tmp_path / "out")},
            "stages": [{"stage": "pii", "params": {"ner_model": None}}],
        }
    )
    res = audit(scrubbed.output_uri)
    assert res["clean"] and res["by_column"]["meta"]["clean"]
    data, manifest = read_output(scrubbed.output_uri)
    assert gone([email, email2, phone], "".join(data["meta"].to_pylist()))
    assert row_domain(data).to_pylist() == ["blog.example.com"] * 4
    assert [p["meta_total"] for p in data["pii"].to_pylist()] == [4] * 4
    counters = next(s for s in scrubbed.report["stages"] if s["name"] == "pii")["counters"]
    assert (
        counters["meta_pii"] == 16 and counters["docs_with_meta_pii"] == 4 and counters["email_address"] == 12
    )
    assert gone([email, email2, phone], json.dumps(scrubbed.report) + json.dumps(manifest))
    # Monitoring counts the hits per type once: meta_pii is the meta share of them, not more hits.
    from refinery.config import MonitoringConfig
    from refinery.monitoring.profile import build_profile

    profile = build_profile(scrubbed.output_uri, None, MonitoringConfig(), "s")
    assert profile["pii"] == {"email_address": 12.0, "phone_number": 4.0} and profile["pii_rate"] == 16 / 4
    assert profile["pii_detectors"] == {
        "EMAIL_ADDRESS": {"email_regex": 12.0},
        "PHONE_NUMBER": {"libphonenumber": 4.0},
    }
