"""Lucene's token filters, reproduced in Python (PyStemmer for Snowball/Porter, tantivy's port of
Lucene's ASCIIFoldingFilter). Each filter maps a token list to a token list."""

from __future__ import annotations

from functools import lru_cache

from .porter import porter_stem

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET (OpenSearch's `_english_`).
ENGLISH_STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split()
)


def lowercase(tokens: list[str]) -> list[str]:
    """Lucene's `LowerCaseFilter`: Java's per-code-point `Character.toLowerCase` (simple case
    mapping; unlike `str.lower`, "İ" becomes "i" and a final "Σ" becomes "σ")."""
    out = []
    for token in tokens:
        if token.isascii():
            out.append(token.lower())
        else:
            out.append("".join("i" if ch == "\u0130" else ch.lower() for ch in token))
    return out


class StopFilter:
    """Lucene's `StopFilter` (optionally case-insensitive like OpenSearch's `ignore_case`)."""

    def __init__(self, words, ignore_case: bool = False):
        self.ignore_case = ignore_case
        self.words = frozenset(w.lower() for w in words) if ignore_case else frozenset(words)

    def __call__(self, tokens: list[str]) -> list[str]:
        if self.ignore_case:
            return [t for t in tokens if t.lower() not in self.words]
        return [t for t in tokens if t not in self.words]


def english_possessive(tokens: list[str]) -> list[str]:
    """Lucene's `EnglishPossessiveFilter`: drops a trailing 's (’s, ＇s)."""
    out = []
    for token in tokens:
        if len(token) >= 2 and token[-1] in "sS" and token[-2] in "'\u2019\uff07":
            token = token[:-2]
        out.append(token)
    return out


def porter(tokens: list[str]) -> list[str]:
    """Lucene's `PorterStemFilter` (the reference implementation, not Snowball's `porter`)."""
    return [porter_stem(t) for t in tokens]


class Stemmer:
    """A Snowball stemmer from PyStemmer, as Lucene's `SnowballFilter` runs it (`english` is
    Porter2; Snowball's `porter` differs from Lucene's `PorterStemFilter`: use `porter` above)."""

    def __init__(self, algorithm: str):
        import Stemmer as pystemmer

        self._stem = pystemmer.Stemmer(algorithm, 0).stemWords

    def __call__(self, tokens: list[str]) -> list[str]:
        return self._stem(tokens)


@lru_cache(maxsize=1)
def _ascii_folder():
    import tantivy

    return tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.regex("[^\x00]+")).filter(tantivy.Filter.ascii_fold()).build()


def asciifolding(tokens: list[str], preserve_original: bool = False) -> list[str]:
    """Lucene's `ASCIIFoldingFilter` (tantivy's `AsciiFoldingFilter` is a port of its table)."""
    if all(t.isascii() for t in tokens):
        return tokens
    folded = _ascii_folder().analyze("\x00".join(t.replace("\x00", "") for t in tokens))
    if not preserve_original:
        return folded
    out = []
    for original, fold in zip(tokens, folded):
        out.append(fold)
        if fold != original:
            out.append(original)
    return out
