"""The quality stages' tokenizer: one tokenization per document, reused by every rule set.

Why: datatrove (the reference for the Gopher, C4 and FineWeb rules) splits words with spaCy's blank English
tokenizer. To agree with it we use the same tokenizer, but we call it once per document and pull the per-token
facts every rule needs out as numpy columns in one `Doc.to_array` call (hash of the token text, offset, length,
whitespace/punctuation flags and three custom lexeme flags). Everything after that is integer arithmetic on
arrays: n-gram repetition is hashing and `np.unique`, not joining strings. Tokenizations are cached per text in
the worker process, so the stages fused after each other (gopher_repetition → gopher_quality → c4_quality →
fineweb_quality) tokenize a document once; c4_quality hands the tokens of its cleaned text on to the next stage.

spaCy splits text into alternating runs of whitespace and non-whitespace and tokenizes each non-whitespace run
on its own, so the tokens of one line are exactly the full text's tokens that fall inside that line. That is
what lets c4_quality count spaCy sentences per line without tokenizing each line again.

This module is not a stage (it registers nothing); the rule framework is in stages/quality/rules.py.
"""

from __future__ import annotations

import numpy as np

# --- character classes (copied from datatrove.utils.text so that this module does not import datatrove) -------

PUNCTUATION = (
    "!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»"
    + "".join(map(chr, (x for a, b in ((0, 9), (11, 13), (13, 32), (127, 160)) for x in range(a, b))))
)
# datatrove's TERMINAL_PUNCTUATION (sentence-final marks of many scripts), as code points
_TERMINAL_CODEPOINTS = (
    0x1AA9, 0xFF1F, 0x2048, 0x11A42, 0xFF0E, 0xAA5E, 0x11143, 0xFE57, 0x110BE, 0x1B7D, 0x1367, 0x11142, 0xA876,
    0xA60E, 0x2049, 0x83E, 0x1AA8, 0x112A9, 0x11C42, 0x1C7F, 0x16A6E, 0x1945, 0x11F43, 0x11F44, 0xFE52, 0x11239,
    0x11238, 0x1362, 0x702, 0x61E, 0xA6F3, 0x10F88, 0x115CD, 0x10A56, 0x11642, 0x61D, 0xAA5F, 0x1809, 0x1B7E,
    0x115D7, 0x1C3C, 0x11EF8, 0x61F, 0x11A9C, 0xA9C9, 0x115C9, 0x10F59, 0x16AF5, 0x16B37, 0x700, 0xA4FF, 0x1735,
    0x115CF, 0x11047, 0x115D3, 0x11944, 0x17D6, 0x11946, 0x115D1, 0x115D2, 0xABEB, 0x6D4, 0x10A57, 0x10F86, 0xA877,
    0x2E54, 0xFF61, 0x17D5, 0x7F9, 0x2E2E, 0x2E, 0x111C5, 0x839, 0x1BC9F, 0xAAF0, 0xA92F, 0x10F57, 0x1B5E, 0x1173C,
    0x1368, 0x110C1, 0xA8CF, 0x111DF, 0x16B38, 0x11A9B, 0x1173E, 0x837, 0x1DA88, 0x3F, 0x110C0, 0x115C3, 0xFF01,
    0x589, 0xA8CE, 0x965, 0x115D6, 0x1B5B, 0x1803, 0x21, 0x104A, 0x16E98, 0x2047, 0x115CC, 0x1144B, 0x16B44,
    0x1B5F, 0x11141, 0x11641, 0x2E3C, 0xAA5D, 0x115CB, 0x3002, 0xA9C8, 0xAAF1, 0x1173D, 0x10F56, 0x110BF, 0x166E,
    0x17D4, 0xA6F7, 0x10F89, 0x17DA, 0x1944, 0x115D5, 0x115CE, 0x1AAA, 0x1B5A, 0x83D, 0x111DE, 0x115CA, 0x10F58,
    0x2E53, 0x115D4, 0x16A6F, 0x111CD, 0x11EF7, 0x10F55, 0x11A43, 0x964, 0x115C2, 0x111C6, 0x11048, 0x104B, 0x1C7E,
    0x11C41, 0xA60F, 0x701, 0x1736, 0x203C, 0x1123B, 0x203D, 0x1AAB, 0xFE56, 0x1144C, 0x1123C, 0x10F87, 0x115D0,
    0x17D9, 0x1C3B,
)  # fmt: skip
TERMINAL_PUNCTUATION = frozenset(chr(c) for c in _TERMINAL_CODEPOINTS)
PUNCTUATION_SET = frozenset(PUNCTUATION) | TERMINAL_PUNCTUATION

HASH_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant: mixes token hashes into pair/n-gram keys


# --- token table --------------------------------------------------------------------------------------------

# columns of the per-document token array
ORTH, IDX, LENGTH, SPACE, PUNCT, NONSYM, ALPHA, SENT_PUNCT = range(8)


class _Tokenizer:
    """spaCy's blank English tokenizer (what datatrove uses), with three custom lexeme flags, memoized per word.

    Why memoized: spaCy builds a Doc per call, about 1 ms for a 2 kB document even when every word is in its
    cache, and that was two thirds of the quality stages' time. spaCy splits text into runs of whitespace and
    non-whitespace and tokenizes each run on its own (`Tokenizer._tokenize_affixes`; special cases never span
    runs unless a rule contains whitespace, which is checked below), folding one ' ' after a word into that word.
    So a document's tokens are the concatenation of its runs' tokens, shifted by the runs' offsets: we keep the
    token rows of each run once and tokenize only runs not seen before, all of a document's new words in one
    spaCy call. The output is identical to calling spaCy on the whole text (tests/test_tokenizer.py).
    New lexemes only compute the attributes we read: spaCy's default getters (shape, like_num, like_url, ...)
    were half of the cost of a new word and do not affect where tokens split."""

    max_vocab = 500_000
    max_runs = 400_000  # memoized runs (~100 B each plus their token rows)

    def __init__(self, language: str = "en") -> None:
        import spacy
        from spacy.attrs import IDX as S_IDX
        from spacy.attrs import IS_PUNCT, IS_SPACE
        from spacy.attrs import LENGTH as S_LENGTH
        from spacy.attrs import ORTH as S_ORTH
        from spacy.pipeline.sentencizer import Sentencizer

        self.language = language
        self.nlp = spacy.blank(language)
        sent_punct = frozenset(Sentencizer.default_punct_chars)
        vocab = self.nlp.vocab
        f_nonsym = vocab.add_flag(lambda s: any(ch not in PUNCTUATION_SET for ch in s))
        f_alpha = vocab.add_flag(lambda s: any(ch.isalpha() for ch in s))
        f_sent = vocab.add_flag(lambda s: s in sent_punct)
        getters = vocab.lex_attr_getters
        vocab.lex_attr_getters = {a: getters[a] for a in (IS_PUNCT, IS_SPACE, f_nonsym, f_alpha, f_sent)}
        self.flag_getters = [
            (col, vocab.lex_attr_getters[a])
            for col, a in (
                (SPACE, IS_SPACE),
                (PUNCT, IS_PUNCT),
                (NONSYM, f_nonsym),
                (ALPHA, f_alpha),
                (SENT_PUNCT, f_sent),
            )
        ]
        self.attrs = [S_ORTH, S_IDX, S_LENGTH, IS_SPACE, IS_PUNCT, f_nonsym, f_alpha, f_sent]
        # A word of letters only is never space or punctuation (spaCy: all characters of category P), has a
        # letter and a non-symbol, and is a sentence mark only if some mark were letters: its flags are fixed.
        self.letter_flags: np.ndarray | None = None
        if not any(c.isalpha() for c in PUNCTUATION_SET) and not any(x.isalpha() for x in sent_punct):
            self.letter_flags = np.zeros(8, dtype=np.uint64)
            self.letter_flags[[NONSYM, ALPHA]] = 1
        self.tokenizer = self.nlp.tokenizer
        # memo of runs: run text -> id; an id's token rows are _rows[_start[id] : _start[id] + _count[id]]
        self.runs: dict[str, int] = {}
        self._keys: list[str] = []  # by id
        self._rows = np.zeros((4096, 8), dtype=np.uint64)
        self._n_rows = 0
        self._start = np.zeros(4096, dtype=np.int64)
        self._count = np.zeros(4096, dtype=np.int64)
        self._is_fused = np.zeros(4096, dtype=bool)
        self.rules = frozenset(self.tokenizer.rules)
        # memoizing runs is exact only if no special case spans a whitespace boundary
        self.memoize = not any(any(c.isspace() for c in k) and not k.isspace() for k in self.rules)
        # letters-only words skip spaCy: checked against the English prefix, suffix and infix rules only
        self.plain_words = language == "en"
        self.affix_words = self.plain_words and self.tokenizer.token_match is None
        self._special_patterns()

    def _special_patterns(self) -> None:
        """What spaCy's special-case phrase matcher could do across two runs.

        spaCy matches the patterns of some special cases (e.g. "(:" = "(" ":") over the whole document, so a match
        can also reach across the single space between two runs, as in "( :)". Such a match is never applied
        (its text holds a space), but it can shadow a real special case beside it: "( :)" gives "(" ":" ")",
        while ":)" alone is one token. Such a match needs a pattern's token pair on a run boundary
        (`pair_set`). The tokens there are ours, except where the matcher had fused a special case at the
        run's edge; then spaCy saw the run's tokens without special cases (`bare`). Those fused tokens are
        among `special_orths`."""
        from spacy.attrs import ORTH as S_ORTH
        from spacy.tokenizer import Tokenizer

        t = self.tokenizer
        self.bare = Tokenizer(
            self.nlp.vocab,
            rules={},
            prefix_search=t.prefix_search,
            suffix_search=t.suffix_search,
            infix_finditer=t.infix_finditer,
            token_match=t.token_match,
            url_match=t.url_match,
        )
        pairs: set[int] = set()
        created_by: dict[int, list[str]] = {}
        changing: set[str] = set()
        for (
            rule,
            tokens,
        ) in t.rules.items():  # the rules spaCy puts into its phrase matcher (add_special_case)
            if (
                not t.faster_heuristics
                or t.find_prefix(rule)
                or t.find_infix(rule)
                or t.find_suffix(rule)
                or " " in rule
            ):
                orth = [tok.orth for tok in self.bare(rule)]
                pairs.update(
                    _pair_keys(
                        np.asarray(orth[:-1], dtype=np.uint64), np.asarray(orth[1:], dtype=np.uint64)
                    ).tolist()
                )
                rule_orth = [self.hash(tok[S_ORTH]) for tok in tokens]
                for created in set(rule_orth) - set(orth):
                    created_by.setdefault(created, []).append(rule)
                if rule_orth != orth:
                    changing.add(rule)
        self.pair_set = pairs
        # run ids with a fused special case: their bare edge tokens
        self.fused: dict[int, tuple[int, int]] = {}
        # tokens the matcher creates, and the rules that create each: a run's tokens can differ from the bare ones
        # only where it holds such a token and one of its rules as a substring (a fused match spans no space)
        self.created_by = {t: tuple(rules) for t, rules in created_by.items()}
        self.special_orths = np.array(sorted(created_by), dtype=np.uint64)
        # texts of the matcher's rules that change the tokens they match (see `_affixed`)
        self.matcher_rules = frozenset(changing)

    def _note_fusions(self, first_id: int) -> None:
        """Remember the bare edge tokens of the runs learned since id `first_id` in which the matcher fused a
        special case (their tokens differ from the bare ones; only runs holding a token it creates and the text of
        a rule that creates it can qualify). Their rows are contiguous at the end of the memo table."""
        counts = self._count[first_id : len(self._keys)]
        if not counts.any():
            return
        orth = self._rows[self._start[first_id] : self._n_rows, ORTH]
        starts = np.cumsum(counts) - counts
        member = _member(orth, self.special_orths)
        hits = np.add.reduceat(member, np.minimum(starts, len(member) - 1)) * (counts > 0)
        for k in np.nonzero(hits)[0].tolist():
            rid = first_id + k
            key, orths = self._keys[rid], self._rows_of(rid)[:, ORTH].tolist()
            if not any(r in key for t in orths for r in self.created_by.get(t, ())):
                continue
            bare = [t.orth for t in self.bare(key)]
            if bare != orths:
                self.fused[rid] = (bare[0], bare[-1])
                self._is_fused[rid] = True

    def _crosses(self, ids: np.ndarray, out: np.ndarray, counts: np.ndarray) -> bool:
        """True if a match across a run boundary could shadow a special case (see `_special_patterns`).

        Shadowing needs a special case that the matcher fused in a run beside the boundary (most documents have
        none). Any match across a boundary holds the two tokens on either side of it, and at the edges of a
        fused run spaCy's matcher saw either our tokens or the bare ones, so both are tried."""
        fused = np.nonzero(self._is_fused[ids])[0].tolist()
        if not fused:
            return False
        ends = np.cumsum(counts)

        def edge(k: int, side: int) -> set[int]:  # side 0: first token, 1: last token
            tokens = {int(out[ends[k] - counts[k] if side == 0 else ends[k] - 1, ORTH])}
            edges = self.fused.get(int(ids[k]))
            if edges is not None:
                tokens.add(edges[side])
            return tokens

        for lft in sorted({j for k in fused for j in (k - 1, k) if 0 <= j < len(ids) - 1}):
            for x in edge(lft, 1):
                for y in edge(lft + 1, 0):
                    if int(_pair_keys(np.uint64(x), np.uint64(y))) in self.pair_set:
                        return True
        return False

    def _spacy(self, text: str) -> np.ndarray:
        doc = self.tokenizer(text)
        arr = doc.to_array(self.attrs) if len(doc) else np.zeros((0, 8), dtype=np.uint64)
        return arr.reshape(-1, 8)

    def __call__(self, text: str) -> np.ndarray:
        """Token rows of `text`, offsets into it.

        The runs that make tokens are found with a vectorized whitespace mask of the code points: every word run,
        and every whitespace run except a single ' ' after a word (spaCy folds it into that word's trailing-space
        flag; a leading run keeps all of its characters, any other run gives up one leading ' '). Each run is one
        dict lookup, and the document's rows are gathered from the memo table in one indexing step rather than
        concatenated from one array per run."""
        # Lexemes persist (common words are then looked up, not rebuilt), so bound the vocabulary's growth.
        if len(self.nlp.vocab) > self.max_vocab or len(self.runs) > self.max_runs:
            self.__init__(self.language)
        if not self.memoize:
            return self._spacy(text)
        if not text:
            return np.zeros((0, 8), dtype=np.uint64)
        cp = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        space = _SPACE[np.minimum(cp, len(_SPACE) - 1)]
        edges = np.flatnonzero(space[1:] != space[:-1]) + 1  # where a run starts (besides 0)
        starts = np.concatenate(([0], edges))
        ends = np.concatenate((edges, [len(cp)]))
        is_space = space[starts]
        keep = ~is_space | (ends - starts != 1) | (cp[starts] != 32) | (starts == 0)
        starts, ends, is_space = starts[keep], ends[keep], is_space[keep]
        starts += is_space & (starts > 0) & (cp[starts] == 32)
        keys = list(map(text.__getitem__, map(slice, starts.tolist(), ends.tolist())))
        memo = self.runs
        found = list(map(memo.get, keys))
        if None in found:
            new = list(dict.fromkeys(k for k, rid in zip(keys, found, strict=True) if rid is None))
            first_id = len(self._keys)
            self._learn(new)
            self._note_fusions(first_id)
            found = list(map(memo.__getitem__, keys))
        ids = np.array(found, dtype=np.int64)
        counts = self._count[ids]
        stops = np.cumsum(counts)
        out = self._rows[np.arange(stops[-1]) + np.repeat(self._start[ids] - (stops - counts), counts)]
        if len(ids) > 1 and self._crosses(ids, out, counts):
            return self._spacy(text)
        out[:, IDX] += np.repeat(starts.astype(np.uint64), counts)
        return out

    def _rows_of(self, rid: int) -> np.ndarray:
        return self._rows[self._start[rid] : self._start[rid] + self._count[rid]]

    def _add(self, keys: list[str], rows: np.ndarray, counts: np.ndarray) -> None:
        """Append new runs' rows (concatenated, `counts` rows per run) to the memo table."""
        n_ids, n_rows = len(self.runs), self._n_rows
        if n_rows + len(rows) > len(self._rows):
            grown = np.zeros((max(2 * len(self._rows), n_rows + len(rows)), 8), dtype=np.uint64)
            grown[:n_rows] = self._rows[:n_rows]
            self._rows = grown
        if n_ids + len(keys) > len(self._start):
            size = max(2 * len(self._start), n_ids + len(keys))
            self._start = np.resize(self._start, size)
            self._count = np.resize(self._count, size)
            self._is_fused = np.concatenate(
                (self._is_fused, np.zeros(size - len(self._is_fused), dtype=bool))
            )
        self._rows[n_rows : n_rows + len(rows)] = rows
        self._start[n_ids : n_ids + len(keys)] = n_rows + np.cumsum(counts) - counts
        self._count[n_ids : n_ids + len(keys)] = counts
        self._n_rows = n_rows + len(rows)
        self.runs.update(zip(keys, range(n_ids, n_ids + len(keys)), strict=True))
        self._keys += keys

    def _learn(self, runs: list[str]) -> None:
        """Token rows of new runs, offsets relative to the run.

        - Words of letters only (`str.isalpha`, any script) that are not a special case are one token: English
          prefix, suffix and infix rules all need a digit, punctuation, a hyphen or a symbol, so spaCy never
          splits them. Their rows are built directly, without creating lexemes: the hash is spaCy's string hash
          and the flags come from the same getter functions spaCy would call.
        - Words of affixes around such a core ("word," "(word)") are split as spaCy's affix loop splits them
          (`_affixed`), with spaCy's own prefix and suffix searches; rows are built the same way.
        - Other words go through spaCy in one call, each on a line of its own. A newline token between words,
          unlike a space, also keeps a special case's phrase match from reaching across two words; words hold no
          whitespace, so every whitespace token of that call is a separator.
        - Whitespace runs (rare) go through spaCy one by one."""
        direct: list[str] = []  # runs whose tokens we split ourselves
        parts: list[list[str]] = []  # their tokens
        words = []
        for r in runs:
            if self.plain_words and r.isalpha() and r not in self.rules:
                direct.append(r)
                parts.append([r])
            elif r[0].isspace():
                arr = self._spacy(r)
                self._add([r], arr, np.array([len(arr)]))
            elif (split := self._affixed(r)) is not None:
                direct.append(r)
                parts.append(split)
            else:
                words.append(r)
        if direct:
            self._add(direct, *self._token_rows(parts))
        if not words:
            return
        arr = self._spacy("\n".join(words))
        arr = arr[arr[:, SPACE] == 0]
        offsets = np.cumsum([0] + [len(w) + 1 for w in words[:-1]], dtype=np.int64).astype(np.uint64)
        owner = np.searchsorted(offsets, arr[:, IDX], side="right") - 1
        arr[:, IDX] -= offsets[owner]
        self._add(words, arr, np.bincount(owner, minlength=len(words)))

    def _affixed(self, run: str) -> list[str] | None:
        """The tokens of a word whose affixes spaCy strips down to a core of letters, or None if it is not one.

        This is spaCy's `Tokenizer._split_affixes` step by step, with its own prefix and suffix searches (a
        learned word cost ~50 µs through spaCy, most of it lexeme and Doc building), and it gives up wherever a
        special case could apply: to the run, to what is left of it after an affix, or to its core. A core of
        letters gets no affix or infix (see `_learn`), so it ends the loop. spaCy's phrase matcher could then
        still fuse a rule over some of the tokens; that needs the rule's text to be a join of consecutive
        tokens, so such runs are given up too. English has no `token_match` (`affix_words`)."""
        if not self.affix_words:
            return None
        rules, prefixes, suffixes = self.rules, [], []
        string, last_size = run, 0
        while string and len(string) != last_size and not string.isalpha():
            if string in rules:
                return None
            last_size = len(string)
            pre_len = self.tokenizer.find_prefix(string)
            if pre_len and string[pre_len:] in rules:
                return None
            suf_len = self.tokenizer.find_suffix(string[pre_len:])
            if suf_len and string[:-suf_len] in rules:
                return None
            if pre_len and suf_len and pre_len + suf_len <= len(string):
                prefixes.append(string[:pre_len])
                suffixes.append(string[-suf_len:])
                string = string[pre_len:-suf_len]
            elif pre_len:
                prefixes.append(string[:pre_len])
                string = string[pre_len:]
            elif suf_len:
                suffixes.append(string[-suf_len:])
                string = string[:-suf_len]
        if not string.isalpha() or string in rules:
            return None
        tokens = prefixes + [string] + suffixes[::-1]
        for i in range(len(tokens)):
            joined = ""
            for tok in tokens[i:]:
                joined += tok
                if joined in self.matcher_rules:
                    return None
        return tokens

    def _token_rows(self, parts: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        """Rows (offsets relative to each run) and row counts of runs split into `parts`, without creating
        lexemes: the hash is spaCy's string hash and the flags come from the getter functions spaCy would call."""
        counts = np.fromiter(map(len, parts), dtype=np.int64, count=len(parts))
        tokens = [tok for part in parts for tok in part]
        rows = np.zeros((len(tokens), 8), dtype=np.uint64)
        letters = np.zeros(len(tokens), dtype=bool)  # tokens whose flags are fixed (letters only)
        if self.letter_flags is not None:
            letters = np.fromiter(map(str.isalpha, tokens), dtype=bool, count=len(tokens))
            rows[letters] = self.letter_flags
        rest = [tok for tok, is_letters in zip(tokens, letters.tolist(), strict=True) if not is_letters]
        for col, getter in self.flag_getters:
            rows[~letters, col] = np.fromiter(map(getter, rest), dtype=bool, count=len(rest))
        rows[:, ORTH] = np.fromiter(map(self.hash, tokens), dtype=np.uint64, count=len(tokens))
        lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
        rows[:, LENGTH] = lengths
        offset = np.cumsum(lengths) - lengths  # of each token in all runs joined
        rows[:, IDX] = offset - np.repeat(offset[np.cumsum(counts) - counts], counts)
        return rows, counts

    @staticmethod
    def hash(s: str) -> int:
        """spaCy's hash of a string (a token's ORTH), without adding it to the string store."""
        from spacy.strings import get_string_id

        return int(get_string_id(s))


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """np.isin for a small sorted set, without isin's per-call set-up (it dominated at ~300 values per call)."""
    if len(sorted_set) == 0:
        return np.zeros(len(values), dtype=bool)
    idx = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[idx] == values


def _pair_keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return a * HASH_MIX + b


# str.isspace() by code point (none above U+3000): where spaCy splits runs
_SPACE = np.array([chr(c).isspace() for c in range(0x3002)], dtype=bool)


_TOKENIZERS: dict[str, _Tokenizer] = {}


def tokenizer(language: str = "en") -> _Tokenizer:
    tok = _TOKENIZERS.get(language)
    if tok is None:
        tok = _TOKENIZERS[language] = _Tokenizer(language)
    return tok


class _TokenCache:
    """Recent tokenizations by text, bounded by total tokens (the fused stages of one batch share them)."""

    def __init__(self, max_tokens: int = 1_500_000) -> None:  # ~100 MB of token rows
        self.max_tokens = max_tokens
        self.data: dict[str, np.ndarray] = {}
        self.tokens = 0

    def get(self, text: str) -> np.ndarray | None:
        return self.data.get(text)

    def put(self, text: str, arr: np.ndarray) -> None:
        if text in self.data:
            return
        self.data[text] = arr
        self.tokens += len(arr) + 1
        while self.tokens > self.max_tokens and self.data:
            old = self.data.pop(next(iter(self.data)))
            self.tokens -= len(old) + 1


_CACHE = _TokenCache()


def tokens(text: str) -> np.ndarray:
    """Token array of one text (rows = tokens, columns ORTH…SENT_PUNCT), whitespace tokens included."""
    arr = _CACHE.get(text)
    if arr is None:
        arr = tokenizer()(text)
        _CACHE.put(text, arr)
    return arr


def remember_tokens(text: str, arr: np.ndarray) -> None:
    """Store a tokenization derived without running spaCy (c4_quality's cleaned text)."""
    _CACHE.put(text, arr)


def words_of(arr: np.ndarray) -> np.ndarray:
    """The 'words' of datatrove's split_into_words: tokens with whitespace-only tokens removed."""
    return arr[arr[:, SPACE] == 0] if len(arr) else arr


def word_hash(word: str) -> int:
    return tokenizer().hash(word)
