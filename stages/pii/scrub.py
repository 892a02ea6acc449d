"""`pii`: find and anonymize personal data in text, and strip identifying metadata from image/audio bytes.

Why: personal data in a training corpus can be memorized and reproduced by a model. Two engines:

- ``engine: fast`` (default): a batch-wide RE2 prefilter marks which documents can hold a candidate of each
  pattern type, validated regexes (Luhn, IBAN mod-97, base58check, SSN rules, a separator-aware phone rule) run
  only on those, and — when a spaCy model is installed — NER runs batched through ``nlp.pipe`` with only the
  ``ner`` component, on documents that contain a capitalized word (all-lowercase ones on a recased view), and
  person-name rules (stages/pii/names.py) add what a small model misses. Recall is checked against presidio's
  recognizers by scripts/eval/pii.py.
- ``engine: presidio``: presidio-analyzer's own ``AnalyzerEngine`` (built explicitly, never downloading), behind
  the same prefilter. Slower; kept as the reference and for users who extend presidio with their own recognizers.

Anonymization is per type: typed placeholder (default, ``<EMAIL_ADDRESS>``), mask, keyed hash (HMAC under a secret
read from the environment variable named in params, so equal values get equal pseudonyms), or keep. A document
with more than ``max_entities`` findings is dropped (``too_much_pii``). Only counts per type are recorded (the
``pii`` struct and report.json), never the values.

``meta`` (the JSON of a record's other fields: an author's e-mail, a page title, the URL) is published with the row,
so its string values are scrubbed too (``scrub_meta``, per key with ``meta_fields``/``meta_exclude``): one detection
pass over the batch's values with the same detectors and operators; URLs keep their scheme and host so per-domain
reports still work (stages/pii/meta.py). ``scrub_text``/``scrub_texts`` expose the scrubber to other parts of the
system, and ``Pii.patterns_only(params)`` builds one without NER, for bulk raw bytes.

Image/audio rows: ``text`` (caption/transcript) goes through the same scrubber, and the media bytes lose their
identifying metadata (stages/pii/media_metadata.py; pixels and samples untouched). When bytes change,
``media.sha256`` is recomputed so it always describes the committed bytes (``phash`` stays valid: the decoded
pixels are identical); what was removed is listed by category in ``pii.media_removed``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from refinery.schema import set_struct_fields
from refinery.stage import FilterParams, Resources, Stage, StageResult, register
from stages.pii.addresses import country_names
from stages.pii.meta import DEFAULT_META_EXCLUDE, is_web_url, string_slots, url_spans, url_view
from stages.pii.names import NameRules
from stages.pii.ner_model import PINNED, describe_model
from stages.pii.patterns import PATTERN_TYPES, Span, candidate_masks, find_patterns, resolve_overlaps
from stages.pii.phones import DEFAULT_REGIONS, PhoneDetector, load_regions

log = logging.getLogger("refinery.pii")

NER_TYPES = ("PERSON", "LOCATION", "ORGANIZATION", "ADDRESS")
ALL_TYPES = tuple(dict.fromkeys((*PATTERN_TYPES, *NER_TYPES)))
DEFAULT_TYPES = [t for t in ALL_TYPES if t != "URL"]
# spaCy OntoNotes labels → our entity types.
SPACY_LABELS = {
    "PERSON": "PERSON",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "ORG": "ORGANIZATION",
    "FAC": "ADDRESS",
}
# presidio's names → ours (NRP, DATE_TIME and others are not scrubbed by default).
PRESIDIO_TYPES = {t: t for t in ALL_TYPES}
# Model names tried, in order, for ner_model="auto". The official models first; the last one is the model the
# default install brings, pinned by version and hash (stages/pii/ner_model.py, docs/PII.md).
AUTO_MODELS = (
    "en_core_web_trf",
    "en_core_web_lg",
    "en_core_web_md",
    "en_core_web_sm",
    PINNED.package,
)
# What finds each entity type, for the start-up line and the report (detector names as in Span.detector).
DETECTORS = {
    "EMAIL_ADDRESS": "email_regex",
    "CREDIT_CARD": "card_luhn",
    "IBAN_CODE": "iban_mod97",
    "US_SSN": "ssn_rules",
    "IP_ADDRESS": "ipv4/ipv6",
    "CRYPTO": "bitcoin_base58check/ethereum",
    "URL": "url_regex",
    "PHONE_NUMBER": "libphonenumber/phone_shape/phone_cue",
    "ADDRESS": "address rules (us, eu, numbered, unit, postal, cjk)",
    "PERSON": "title_rule/initial_rule",
}
Operator = Literal["replace", "mask", "hash", "keep"]

_ANNOUNCED: set[str] = set()


def struct_name(entity_type: str) -> str:
    return entity_type.lower()


PII_STRUCT_FIELDS = [pa.field(struct_name(t), pa.int32()) for t in ALL_TYPES] + [
    pa.field("total", pa.int32()),
    pa.field("media_removed", pa.list_(pa.string())),
    # How many of `total` (and of the per-type counts) were found in `meta` rather than in `text`.
    pa.field("meta_total", pa.int32()),
    # Findings per "TYPE/detector" (text and meta): which detectors found what, never the values.
    pa.field("by_detector", pa.map_(pa.string(), pa.int32())),
]


class PiiParams(FilterParams):
    entities: list[str] = Field(default_factory=lambda: list(DEFAULT_TYPES))
    engine: Literal["fast", "presidio"] = "fast"
    # "auto": the first installed of AUTO_MODELS (the default install brings the pinned one); a spaCy package name
    # or a model folder (a model you trust, e.g. the official en_core_web_lg); or null for pattern recognizers only.
    ner_model: str | None = "auto"
    ner_batch_size: int = Field(default=64, gt=0)
    # Propagate names found by NER to their other mentions (NER often tags only one): within the same document,
    # across the whole batch (a name tagged in one document is masked where it appears capitalized in another; on
    # presidio_synth_v2 it cut PERSON precision from 0.72 to 0.52 for 0.2 points less leak), or off.
    propagate_names: Literal["doc", "batch", "off"] = "doc"
    # "Anna, Derek and Jodi": when NER tags one member of a list of capitalized words as a person, tag them all.
    expand_name_lists: bool = True
    # With a model: PERSON rules that catch what a small NER model misses (stages/pii/names.py) — Census given
    # names that are not English words, "my name is …"/"Name: …" cues, dialogue speaker labels, and a recased
    # view of all-lowercase documents so that NER sees their names. On presidio_synth_v2 they cut the PERSON
    # leak from 16.3% to 5.8% at equal precision (docs/evaluation/pii.md).
    name_rules: bool = True
    prefilter: bool = True
    # Phones without a country code are tried in these regions, in order (ISO 3166 codes; stages/pii/phones.py).
    phone_regions: list[str] = Field(default_factory=lambda: list(DEFAULT_REGIONS))
    # libphonenumber's leniency for numbers without a country code ("valid": the number exists in a region's plan;
    # numbers it rejects still pass the separator-aware shape rule); with a `+`, a possible length is enough.
    # Measured per leniency in docs/evaluation/pii.md.
    phone_leniency: Literal["possible", "valid", "strict_grouping", "exact_grouping"] = "valid"
    # Short local numbers ("office 781 1704", "Phone: 4567 89") count only next to a cue word.
    phone_cue_words: bool = True
    default_operator: Operator = "replace"
    operators: dict[str, Operator] = Field(default_factory=dict)
    mask_char: str = Field(default="*", min_length=1, max_length=1)
    # Name of the environment variable holding the HMAC secret for the `hash` operator (never the secret itself).
    hash_secret_env: str = "REFINERY_PII_SECRET"
    hash_chars: int = Field(default=12, ge=6, le=64)
    max_entities: int | None = Field(default=None, ge=0, description="drop a document with more findings")
    presidio_score_threshold: float = Field(default=0.4, ge=0, le=1)
    scrub_media: bool = True
    # Scrub the string values of the `meta` JSON (any depth) with the same detectors and operators as the text.
    scrub_meta: bool = True
    # Top-level meta keys to scan; null = every key not in meta_exclude (which is then ignored when this is set).
    meta_fields: list[str] | None = None
    # Top-level keys never scanned: machine data the readers write (ids, dates, codes), not personal data.
    meta_exclude: list[str] = Field(default_factory=lambda: list(DEFAULT_META_EXCLUDE))

    @field_validator("entities")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if t not in ALL_TYPES]
        if bad:
            raise ValueError(f"unknown entity types {bad}; known: {list(ALL_TYPES)}")
        return v

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, v: list[str]) -> list[str]:
        import phonenumbers

        bad = [r for r in v if r.upper() not in phonenumbers.SUPPORTED_REGIONS]
        if bad:
            raise ValueError(f"unknown phone regions {bad}: use ISO 3166 alpha-2 codes such as US, GB, DE")
        return [r.upper() for r in v]

    @field_validator("operators")
    @classmethod
    def _known_ops(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [t for t in v if t not in ALL_TYPES]
        if bad:
            raise ValueError(f"operators for unknown entity types {bad}; known: {list(ALL_TYPES)}")
        return v


def resolve_model(name: str | None) -> str | None:
    """The installed spaCy package (or model folder) to use, or None. Never downloads."""
    if not name:
        return None
    import importlib.util

    if name != "auto" and os.path.isfile(os.path.join(name, "meta.json")):
        return name
    candidates = AUTO_MODELS if name == "auto" else (name,)
    for c in candidates:
        if importlib.util.find_spec(c) is not None:
            return c
    return None


def silence_tldextract() -> None:
    """presidio's URL/email validation uses tldextract, which tries to download the Public Suffix List."""
    try:
        import tldextract
        import tldextract.tldextract as tx

        tx.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=())
    except ImportError:  # pragma: no cover
        pass
    logging.getLogger("tldextract").setLevel(logging.CRITICAL)
    logging.getLogger("filelock").setLevel(logging.WARNING)


def build_presidio(model: str | None):
    """An AnalyzerEngine built explicitly: `AnalyzerEngine()` with no arguments tries to download offline."""
    silence_tldextract()
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider, SpacyNlpEngine

    if model:
        nlp = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": model}])
        nlp.load()
    else:
        nlp = NlpEngineProvider(
            nlp_configuration={
                "nlp_engine_name": "no_op",
                "models": [{"lang_code": "en", "model_name": "none"}],
            }
        ).create_engine()
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])


_CAPWORD = r"\p{Lu}[\p{Ll}\p{Lu}]"  # a capitalized (or all-caps) word: the only place NER finds names


@register
class Pii(Stage[PiiParams]):
    name = "pii"
    resources = Resources(num_cpus=1)
    without_ner_by_choice = False  # patterns_only(): the missing model is not a gap to report

    def __init__(self, params=None) -> None:
        super().__init__(params)
        p = self.params
        # An actor pool only when there is a model to load once (NER, or presidio's engine). The pattern
        # recognizers build in milliseconds, and as tasks they run on workers that are already warm instead
        # of a new actor pool's processes.
        # ner_model: null asks for no model (patterns only): nothing to load, so no actor pool either.
        self.wants_ner = bool(p.ner_model) and any(t in NER_TYPES for t in p.entities)
        self.stateful = p.engine == "presidio" or self.wants_ner
        self.nlp = None
        self.analyzer = None
        self.model: str | None = None
        self.secret: bytes | None = None
        self._ready = False
        self.names: NameRules | None = None
        self.stats = {"docs": 0, "pattern_scanned": 0, "ner_scanned": 0, "ner_recased": 0, "meta_values": 0}
        self._meta_fields = frozenset(p.meta_fields) if p.meta_fields is not None else None
        self._meta_exclude = frozenset(p.meta_exclude)
        self.finders = {
            "PHONE_NUMBER": PhoneDetector(p.phone_regions, p.phone_leniency, p.phone_cue_words).find
        }

    @classmethod
    def patterns_only(cls, params: PiiParams | Mapping[str, Any] | None = None) -> Pii:
        """The same entity types and operators without NER (validated patterns and title/street rules only):
        two orders of magnitude faster than with a model, for bulk text such as quarantined raw records."""
        p = params if isinstance(params, PiiParams) else PiiParams(**(params or {}))
        scrubber = cls(p.model_copy(update={"ner_model": None, "engine": "fast"}))
        scrubber.without_ner_by_choice = True  # no model on purpose: nothing to warn about at start-up
        return scrubber

    # ------------------------------------------------------------ contract

    def describe(self) -> str:
        """The start-up line: which detectors are active, which entity types are not covered. Loads nothing: it
        only looks up which model is installed."""
        return self._coverage()[0]

    def uncovered(self) -> list[str]:
        """Entity types asked for that only weak rules (or nothing) find here: no NER model is installed."""
        return self._coverage()[1]

    def _coverage(self) -> tuple[str, list[str]]:
        p = self.params
        model = resolve_model(p.ner_model) if self.wants_ner else None
        ner = [t for t in p.entities if t in NER_TYPES]
        missing = [t for t in ner if not model and t not in ("PERSON", "ADDRESS")]
        weak = [t for t in ner if not model and t in ("PERSON", "ADDRESS")]
        found = [f"{t}: {DETECTORS[t]}" for t in p.entities if t in DETECTORS and t not in NER_TYPES]
        if model:
            label = describe_model(model)
            found += [f"{t}: spaCy NER ({label})" for t in ner]
            if "PERSON" in ner and p.name_rules:
                found.append("PERSON: name rules")
            if "ADDRESS" in ner:
                found.append(f"ADDRESS: {DETECTORS['ADDRESS']}")
        else:
            found += [f"{t}: {DETECTORS[t]} only, no NER" for t in weak]
        skipped = [t for t in ALL_TYPES if t not in p.entities]
        line = f"pii: engine={p.engine}; detectors: " + "; ".join(found)
        if missing or weak:
            line += f"; NOT COVERED (no spaCy NER model installed, ner_model={p.ner_model}): " + ", ".join(
                missing + weak
            )
        if skipped:
            line += "; not scrubbed by config: " + ", ".join(skipped)
        return line, missing + weak

    def output_fields(self) -> list[pa.Field]:
        return [pa.field("pii", pa.struct(PII_STRUCT_FIELDS))]

    def setup(self) -> None:
        p = self.params
        self.model = resolve_model(p.ner_model) if self.wants_ner else None
        ops = {t: p.operators.get(t, p.default_operator) for t in p.entities}
        if "hash" in ops.values():
            secret = os.environ.get(p.hash_secret_env)
            if not secret:
                raise RuntimeError(
                    f"pii: operator 'hash' needs a secret in the environment variable "
                    f"{p.hash_secret_env!r}, which is not set"
                )
            self.secret = secret.encode()
        if p.engine == "presidio":
            self.analyzer = build_presidio(self.model)
        elif self.model:
            import spacy

            # The lemmatizer is loaded but disabled: never run, its WordNet tables are the name rules' dictionary.
            self.nlp = spacy.load(
                self.model,
                exclude=["tagger", "parser", "attribute_ruler", "senter", "tok2vec"],
                disable=["lemmatizer"],
            )
            if "ner" not in self.nlp.pipe_names:  # a model whose ner listens to a shared tok2vec
                self.nlp = spacy.load(
                    self.model, exclude=["tagger", "parser", "attribute_ruler"], disable=["lemmatizer"]
                )
            self.nlp.max_length = 2_000_000
        self.active = [t for t in p.entities if t in PATTERN_TYPES or (t in NER_TYPES and self.model)]
        # One-time loads here, not in the first batch that needs them: the country names of the address rules
        # (libphonenumber's geocoding data) and the numbering plans of the phone regions.
        if "ADDRESS" in self.active:
            country_names()
        if "PHONE_NUMBER" in self.active:
            load_regions(p.phone_regions)
        # PERSON/ADDRESS also have heuristic pattern rules (titles, street numbers) that run without a model.
        self.ner_active = [t for t in p.entities if t in NER_TYPES and self.model]
        self.names = (
            NameRules.from_nlp(self.nlp)
            if self.nlp is not None and p.name_rules and "PERSON" in self.ner_active
            else None
        )
        key = f"{p.engine}|{p.ner_model}|{self.model}|{','.join(self.active)}"
        if key not in _ANNOUNCED:
            _ANNOUNCED.add(key)
            line, missing = self._coverage()
            if missing and not self.without_ner_by_choice:
                log.warning("%s (install a spaCy model: docs/PII.md)", line)
            else:
                log.info("%s", line)
        self._ready = True

    def process(self, batch: pa.Table) -> StageResult:
        if not self._ready:
            self.setup()
        p = self.params
        n = batch.num_rows
        texts = batch["text"].to_pylist()
        spans = self.detect(batch["text"], texts)
        new_texts: list[str | None] = []
        counts = {t: [0] * n for t in ALL_TYPES}
        totals = [0] * n
        reasons: list[str | None] = [None] * n
        by_detector: list[dict[str, int]] = [{} for _ in range(n)]
        for i, (text, doc_spans) in enumerate(zip(texts, spans, strict=True)):
            if not doc_spans:
                new_texts.append(text)
                continue
            for s in doc_spans:
                counts[s.type][i] += 1
                key = f"{s.type}/{s.detector or 'rules'}"
                by_detector[i][key] = by_detector[i].get(key, 0) + 1
            totals[i] = len(doc_spans)
            new_texts.append(self.anonymize(text, doc_spans))
            if p.max_entities is not None and totals[i] > p.max_entities:  # text findings only
                reasons[i] = "too_much_pii"
        self.stats["docs"] += n
        text_field = batch.schema.field("text")
        out = batch.set_column(
            batch.schema.get_field_index("text"), text_field, pa.array(new_texts, type=text_field.type)
        )
        removed: list[list[str] | None] = [None] * n
        if p.scrub_media and "media" in out.column_names and "modality" in out.column_names:
            out, removed = self._scrub_media(out)
        meta_totals = [0] * n
        if p.scrub_meta and "meta" in out.column_names:
            out, meta_types = self._scrub_meta(out)
            for i, types in meta_types.items():
                for t, det in types:
                    counts[t][i] += 1
                    key = f"{t}/{det or 'rules'}"
                    by_detector[i][key] = by_detector[i].get(key, 0) + 1
                meta_totals[i] = len(types)
                totals[i] += len(types)
        values: dict[str, pa.Array] = {struct_name(t): pa.array(counts[t], pa.int32()) for t in ALL_TYPES}
        values["total"] = pa.array(totals, pa.int32())
        values["media_removed"] = pa.array(removed, pa.list_(pa.string()))
        values["meta_total"] = pa.array(meta_totals, pa.int32())
        values["by_detector"] = pa.array(
            [sorted(d.items()) or None for d in by_detector], pa.map_(pa.string(), pa.int32())
        )
        out = set_struct_fields(out, "pii", values)
        drop = pa.array(reasons, pa.string()) if any(r is not None for r in reasons) else None
        return out, drop

    def summarize(self, kept: pa.Table) -> dict[str, float]:
        if "pii" not in kept.column_names or kept.num_rows == 0:
            return {}
        col = kept["pii"].combine_chunks()
        out: dict[str, float] = {}
        names = {col.type.field(i).name: i for i in range(col.type.num_fields)}
        for t in ALL_TYPES:
            k = struct_name(t)
            if k in names:
                v = pc.sum(col.field(names[k])).as_py() or 0
                if v:
                    out[k] = float(v)
        if "total" in names:
            tot = col.field(names["total"])
            out["docs_with_pii"] = float(
                pc.sum(pc.greater(pc.fill_null(tot, 0), 0).cast(pa.int64())).as_py() or 0
            )
        if "meta_total" in names:
            meta = pc.fill_null(col.field(names["meta_total"]), 0)
            if v := pc.sum(meta).as_py():
                out["meta_pii"] = float(v)
                out["docs_with_meta_pii"] = float(pc.sum(pc.greater(meta, 0).cast(pa.int64())).as_py() or 0)
        if "by_detector" in names:
            tally: dict[str, float] = {}
            for row in col.field(names["by_detector"]).to_pylist():
                for k, v in row or ():
                    tally[k] = tally.get(k, 0.0) + v
            out.update({f"by_detector.{k}": v for k, v in sorted(tally.items())})
        if "media_removed" in names:
            lens = pc.list_value_length(col.field(names["media_removed"]))
            out["media_items_scrubbed"] = float(
                pc.sum(pc.greater(pc.fill_null(lens, 0), 0).cast(pa.int64())).as_py() or 0
            )
            flat = pc.list_flatten(col.field(names["media_removed"]))
            if len(flat):
                for item in pc.value_counts(flat).to_pylist():
                    out[f"media_removed.{item['values']}"] = float(item["counts"])
        return out

    # ------------------------------------------------------------ one text, for other parts of the system

    def scrub_texts(self, texts: Sequence[str | None]) -> list[str | None]:
        """Each text with its PII anonymized by the configured types and operators (no counts, no drop): one
        detection pass, so callers with many strings (a writer's quarantined records) pass them together."""
        if not self._ready:
            self.setup()
        values = list(texts)
        spans = self.detect(pa.array(values, pa.large_string()), values)
        return [self.anonymize(t, s) if s and t else t for t, s in zip(values, spans, strict=True)]

    def scrub_text(self, text: str) -> str:
        """One text with its PII anonymized (see scrub_texts)."""
        return self.scrub_texts([text])[0] or text

    # ------------------------------------------------------------ detection

    def detect(
        self, text_col: pa.ChunkedArray | pa.Array, texts: list[str | None], ner: Sequence[bool] | None = None
    ) -> list[list[Span]]:
        """Resolved, non-overlapping spans per document; ``ner`` (default: all) says which documents NER and the
        name rules may see (patterns run on all)."""
        p = self.params
        n = len(texts)
        found: list[list[Span]] = [[] for _ in range(n)]
        pattern_types = [t for t in self.active if t in PATTERN_TYPES]
        has_cap = (
            pc.fill_null(pc.match_substring_regex(pc.fill_null(text_col, ""), _CAPWORD), False).to_pylist()
            if self.ner_active
            else [False] * n
        )
        if p.prefilter:
            masks = candidate_masks(text_col, pattern_types)
            ner_mask = has_cap
        else:
            masks = {t: [-1] * n for t in pattern_types}  # every spec of every type
            ner_mask = [bool(self.ner_active)] * n
        if self.analyzer is not None:
            want = [t for t in self.active]
            for i, text in enumerate(texts):
                if not text or not (ner_mask[i] or any(masks[t][i] for t in pattern_types)):
                    continue
                self.stats["pattern_scanned"] += 1
                ents = want if ner is None or ner[i] else pattern_types
                for r in self.analyzer.analyze(
                    text, language="en", entities=ents, score_threshold=p.presidio_score_threshold
                ):
                    if r.entity_type in PRESIDIO_TYPES:
                        found[i].append(
                            Span(r.start, r.end, PRESIDIO_TYPES[r.entity_type], r.score, "presidio")
                        )
            return [resolve_overlaps(s) for s in found]
        for i, text in enumerate(texts):
            if not text:
                continue
            types = [t for t in pattern_types if masks[t][i]]
            if types:
                self.stats["pattern_scanned"] += 1
                found[i].extend(find_patterns(text, types, self.finders, {t: masks[t][i] for t in types}))
        if self.nlp is not None and self.ner_active:
            allowed = texts if ner is None else [t if ok else None for t, ok in zip(texts, ner, strict=True)]
            self._ner(allowed, ner_mask, has_cap, found)
        return [resolve_overlaps(s) for s in found]

    def _ner(
        self, texts: list[str | None], ner_mask: list[bool], has_cap: list[bool], found: list[list[Span]]
    ) -> None:
        """Batched NER (ner component only) plus the name rules, appending to ``found`` in place.

        With the name rules on, a document without a capitalized word runs NER on a recased view of itself (same
        length, so offsets hold) when the view has likely names capitalized; otherwise ``ner_mask`` decides.
        """
        p = self.params
        views: dict[int, str] = {}
        run: list[int] = []
        for i, text in enumerate(texts):
            if not text:
                continue
            view = self.names.recase(text) if self.names is not None and not has_cap[i] else None
            if view is not None:
                views[i] = view
                self.stats["ner_recased"] += 1
            elif not ner_mask[i]:
                continue
            run.append(i)
        if not run:
            return
        self.stats["ner_scanned"] += len(run)
        wanted = set(self.ner_active)
        docs = self.nlp.pipe((views.get(i, texts[i]) for i in run), batch_size=p.ner_batch_size)
        doc_names: dict[int, set[str]] = {}
        for i, doc in zip(run, docs, strict=True):
            text = views.get(i) or texts[i]
            assert text is not None
            if i in views and "PERSON" in wanted:
                found[i].extend(find_patterns(text, ["PERSON"]))
            others: list[tuple[int, int]] = []
            for ent in doc.ents:
                t = SPACY_LABELS.get(ent.label_)
                if t in wanted:
                    found[i].append(Span(ent.start_char, ent.end_char, t, 0.85, "spacy_ner"))
                if ent.label_ != "PERSON":
                    others.append((ent.start_char, ent.end_char))
            if "PERSON" not in wanted:
                continue
            names = {
                w
                for e in doc.ents
                if e.label_ == "PERSON"
                for w in _WORD.findall(e.text)
                if w[0].isupper() and len(w) >= 3
            }
            if self.names is not None:
                extra = self.names.find(text, found[i], others)
                names.update(w for s in extra for w in self.names.name_words(text[s.start : s.end]))
                found[i].extend(extra)
            if p.expand_name_lists:
                found[i].extend(_expand_lists(text, found[i]))
            if names:
                doc_names[i] = names
        if p.propagate_names != "off" and doc_names:
            everyone = set().union(*doc_names.values()) if p.propagate_names == "batch" else set()
            for i in run:
                pool = everyone or doc_names.get(i)
                if pool:
                    found[i].extend(_mentions(views.get(i) or texts[i] or "", pool))

    # ------------------------------------------------------------ anonymization

    def anonymize(self, text: str, spans: list[Span]) -> str:
        """Rebuild the text from slices between spans (sorted, non-overlapping): offsets cannot corrupt it."""
        p = self.params
        parts: list[str] = []
        pos = 0
        for s in spans:
            parts.append(text[pos : s.start])
            value = text[s.start : s.end]
            op = p.operators.get(s.type, p.default_operator)
            if op == "replace":
                parts.append(f"<{s.type}>")
            elif op == "mask":
                parts.append(re.sub(r"\S", p.mask_char, value))
            elif op == "hash":
                digest = hmac.new(
                    self.secret or b"", f"{s.type}\x00{value}".encode(), hashlib.sha256
                ).hexdigest()
                parts.append(f"<{s.type}_{digest[: p.hash_chars]}>")
            else:
                parts.append(value)
            pos = s.end
        parts.append(text[pos:])
        return "".join(parts)

    # ------------------------------------------------------------ meta

    def _scrub_meta(self, table: pa.Table) -> tuple[pa.Table, dict[int, list[tuple[str, str]]]]:
        """Anonymize the selected string values of each row's ``meta`` JSON in one detection pass over the batch;
        per row with findings, the entity type and detector of each. Rows without a change keep their JSON byte for byte."""
        col = table["meta"]
        n = table.num_rows
        if col.null_count == n or pa.types.is_null(col.type):
            return table, {}
        raws = col.to_pylist()
        boxes: dict[int, list[Any]] = {}
        plain: set[int] = set()
        slots: list[tuple[int, Any, Any]] = []
        for i, raw in enumerate(raws):
            if not raw:
                continue
            try:
                box = [orjson.loads(raw)]
            except orjson.JSONDecodeError:  # not JSON (a hand-written Parquet column): scan it as one string
                box = [raw]
                plain.add(i)
            found = string_slots(box, self._meta_fields, self._meta_exclude)
            if found:
                boxes[i] = box
                slots.extend((i, parent, key) for parent, key in found)
        if not slots:
            return table, {}
        values: list[str] = [parent[key] for _, parent, key in slots]
        urls = [is_web_url(v) for v in values]
        views = [url_view(v) if u else None for v, u in zip(values, urls, strict=True)]
        seen: list[str | None] = [
            view[0] if view is not None else v for v, view in zip(values, views, strict=True)
        ]
        self.stats["meta_values"] += len(seen)
        # URLs get the patterns only: NER on a URL's slug masked whole paths (docs/evaluation/pii.md).
        spans = self.detect(pa.array(seen, pa.large_string()), seen, ner=[not u for u in urls])
        types: dict[int, list[tuple[str, str]]] = {}
        for (i, parent, key), value, url, view, found_spans in zip(
            slots, values, urls, views, spans, strict=True
        ):
            if url and found_spans:
                found_spans = url_spans(value, found_spans, view)
            if found_spans:
                parent[key] = self.anonymize(value, found_spans)
                types.setdefault(i, []).extend((s.type, s.detector) for s in found_spans)
        if not types:
            return table, {}
        for i in types:
            raws[i] = boxes[i][0] if i in plain else orjson.dumps(boxes[i][0]).decode()
        field = table.schema.field("meta")
        return table.set_column(
            table.schema.get_field_index("meta"), field, pa.array(raws, field.type)
        ), types

    # ------------------------------------------------------------ media

    def _scrub_media(self, table: pa.Table) -> tuple[pa.Table, list[list[str] | None]]:
        from stages.pii.media_metadata import scrub_media_bytes

        n = table.num_rows
        modality = table["modality"].to_pylist()
        removed: list[list[str] | None] = [None] * n
        rows = [i for i in range(n) if modality[i] in ("image", "audio")]
        if not rows:
            return table, removed
        media = table["media"].combine_chunks()
        if media.null_count == n:
            return table, removed
        names = [media.type.field(i).name for i in range(media.type.num_fields)]
        children = {name: media.field(i) for i, name in enumerate(names)}
        blobs = children["bytes"].to_pylist()
        mimes = children["mime"].to_pylist() if "mime" in children else [None] * n
        uris = children["uri"].to_pylist() if "uri" in children else [None] * n
        shas = children["sha256"].to_pylist() if "sha256" in children else [None] * n
        valid = media.is_valid().to_pylist()
        changed = False
        for i in rows:
            if not valid[i] or not blobs[i]:
                continue
            new, what = scrub_media_bytes(blobs[i], modality[i], mimes[i], uris[i])
            removed[i] = what
            if new is not blobs[i] and new != blobs[i]:
                blobs[i] = new
                shas[i] = hashlib.sha256(new).hexdigest()
                changed = True
        if not changed:
            return table, removed
        children["bytes"] = pa.array(blobs, children["bytes"].type)
        if "sha256" in children:
            children["sha256"] = pa.array(shas, children["sha256"].type)
        struct = pa.StructArray.from_arrays(
            list(children.values()), fields=list(media.type), mask=media.is_null()
        )
        field = table.schema.field("media")
        return table.set_column(
            table.schema.get_field_index("media"), field, struct.cast(field.type)
        ), removed


_WORD = re.compile(r"[^\W\d_][\w'\-]+")
_CAP_LIST = re.compile(r"[A-Z][^\W\d_]+(?:, [A-Z][^\W\d_]+)+,? (?:and|or|&) [A-Z][^\W\d_]+")


def _mentions(text: str, names: set[str]) -> list[Span]:
    """Capitalized words of the text that are known names."""
    return [
        Span(m.start(), m.end(), "PERSON", 0.7, "name_propagation")
        for m in _WORD.finditer(text)
        if m.group()[0].isupper() and m.group() in names
    ]


def _expand_lists(text: str, spans: list[Span]) -> list[Span]:
    persons = [s for s in spans if s.type == "PERSON"]
    if not persons:
        return []
    out: list[Span] = []
    for m in _CAP_LIST.finditer(text):
        if any(s.start < m.end() and m.start() < s.end for s in persons):
            out += [
                Span(m.start() + w.start(), m.start() + w.end(), "PERSON", 0.6, "name_lists")
                for w in _WORD.finditer(m.group())
                if w.group()[0].isupper()
            ]
    return out


__all__ = ["Pii", "PiiParams", "ALL_TYPES"]


class RawScrubber:
    """Scrubs quarantined records' raw bytes in the writer (`quarantine.keep_raw: true` with a `pii` stage):
    the pii stage's pattern recognizers and operators, without NER (raw records are mostly broken JSON, and the
    writer must stay light). Raw bytes that are mostly not text (an undecodable image) cannot be scrubbed and
    are withheld."""

    def __init__(self, params: Mapping[str, Any]):
        self.params = dict(params)
        self._pii: Pii | None = None

    def __call__(self, raws: list[bytes | None]) -> list[bytes | None]:
        if self._pii is None:
            self._pii = Pii.patterns_only(self.params)
        texts: list[str | None] = []
        for r in raws:
            t = None if r is None else r.decode("utf-8", errors="replace")
            texts.append(None if t is None or t.count("\ufffd") > len(t) // 10 else t)
        return [None if t is None else t.encode() for t in self._pii.scrub_texts(texts)]
