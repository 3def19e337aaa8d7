"""Lucene's tokenizers, reproduced in Python (`regex` for Unicode segmentation).

Each tokenizer maps a string to its list of token strings (positions are not needed: the engine
indexes term frequencies and Lucene's field length = the number of emitted tokens).
"""

from __future__ import annotations

import regex

MAX_TOKEN_LENGTH = 255  # Lucene StandardAnalyzer / CharTokenizer default

# UAX#29 word segments (regex's WORD flag gives Unicode default word boundaries).
_WORD_BOUNDARY = regex.compile(r"\b", flags=regex.WORD | regex.V1)
# Lucene's StandardTokenizer emits a segment when it holds a letter, digit, ideograph, kana,
# Hangul or Southeast Asian letter, or when it is an emoji sequence; punctuation, symbols and
# spaces are dropped (a keycap sequence such as #\uFE0F\u20E3 is an emoji).
_TOKEN_CHAR = regex.compile(
    r"[\p{Word_Break=ALetter}\p{Word_Break=Numeric}\p{Word_Break=Katakana}\p{Word_Break=Hebrew_Letter}"
    r"\p{Ideographic}\p{Script=Hiragana}\p{Extended_Pictographic}\p{Regional_Indicator}\u20e3]"
)
# Characters Lucene's grammar calls ComplexContext (Line_Break=SA: Thai, Lao, Khmer, Myanmar...):
# UAX#29 breaks between each; Lucene keeps a run of them as one <SOUTHEAST_ASIAN> token.
_COMPLEX_CONTEXT = regex.compile(r"^[\p{Line_Break=SA}]+$")
_LETTERS = regex.compile(r"\p{L}+")
_JAVA_WHITESPACE = "\t\n\u000b\f\r\u001c\u001d\u001e\u001f \u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2008\u2009\u200a\u2028\u2029\u205f\u3000"
_NON_WHITESPACE = regex.compile("[^" + regex.escape(_JAVA_WHITESPACE, special_only=False) + "]+")


def _chunks(token: str, max_length: int) -> list[str]:
    """Lucene splits a token longer than the maximum length into pieces of that length."""
    if len(token) <= max_length:
        return [token]
    return [token[i : i + max_length] for i in range(0, len(token), max_length)]


def _utf16_prefix(segment: str, max_units: int) -> int:
    """How many characters of `segment` fit in `max_units` UTF-16 code units (Java chars)."""
    units = 0
    for i, ch in enumerate(segment):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > max_units:
            return i
    return len(segment)


def standard_tokens(text: str, max_token_length: int = MAX_TOKEN_LENGTH) -> list[str]:
    """Lucene's `StandardTokenizer`: UAX#29 word segments that contain a letter, digit or emoji.

    A segment longer than `max_token_length` is cut like Lucene's scanner cuts it: its first
    `max_token_length` UTF-16 units are tokenized on their own, and scanning resumes after them.
    """
    out: list[str] = []
    run = ""  # pending run of Southeast Asian segments
    position = 0
    for segment in _WORD_BOUNDARY.split(text):
        start = position
        position += len(segment)
        if segment and _COMPLEX_CONTEXT.match(segment):
            run += segment
            continue
        if run:
            out.extend(_chunks(run, max_token_length))
            run = ""
        if not segment or not _TOKEN_CHAR.search(segment):
            continue
        cut = _utf16_prefix(segment, max_token_length)
        if cut < len(segment):
            out.extend(standard_tokens(segment[:cut], max_token_length))
            return out + standard_tokens(text[start + cut :], max_token_length)
        out.append(segment)
    if run:
        out.extend(_chunks(run, max_token_length))
    return out


def letter_tokens(text: str) -> list[str]:
    """Lucene's `LetterTokenizer`: maximal runs of letters (Java `Character.isLetter`)."""
    return [piece for token in _LETTERS.findall(text) for piece in _chunks(token, MAX_TOKEN_LENGTH)]


def whitespace_tokens(text: str) -> list[str]:
    """Lucene's `WhitespaceTokenizer`: runs of characters that are not Java whitespace."""
    return [piece for token in _NON_WHITESPACE.findall(text) for piece in _chunks(token, MAX_TOKEN_LENGTH)]


def keyword_tokens(text: str) -> list[str]:
    """Lucene's `KeywordTokenizer`: the whole input as one token (an empty one for "")."""
    return [text]


# Java's predefined classes are ASCII-only (without UNICODE_CHARACTER_CLASS), \p{..} is Unicode.
_JAVA_ASCII_CLASSES = {
    "w": "[a-zA-Z_0-9]", "W": "[^a-zA-Z_0-9]", "d": "[0-9]", "D": "[^0-9]",
    "s": "[ \\t\\n\\x0B\\f\\r]", "S": "[^ \\t\\n\\x0B\\f\\r]",
}


def _java_pattern(pattern: str, unicode_classes: bool) -> str:
    """A Java regex as the `regex` module (V1: nested sets and && like Java) reads it."""
    if unicode_classes:
        return pattern
    out, i = [], 0
    while i < len(pattern):
        if pattern[i] == "\\" and i + 1 < len(pattern):
            out.append(_JAVA_ASCII_CLASSES.get(pattern[i + 1], pattern[i : i + 2]))
            i += 2
        else:
            out.append(pattern[i])
            i += 1
    return "".join(out)


class PatternTokenizer:
    """Lucene's `PatternTokenizer` with `group: -1`: the text split on a (Java) regex, empty pieces
    dropped."""

    _FLAGS = {"CASE_INSENSITIVE": regex.IGNORECASE, "MULTILINE": regex.MULTILINE, "DOTALL": regex.DOTALL,
              "COMMENTS": regex.VERBOSE, "UNICODE_CASE": 0, "UNICODE_CHARACTER_CLASS": 0}

    def __init__(self, pattern: str, flags: str = ""):
        names = [f.strip() for f in flags.split("|") if f.strip()]
        options = regex.V1
        for name in names:
            if name not in self._FLAGS:
                raise ValueError(f"unknown pattern flag [{name}]")
            options |= self._FLAGS[name]
        self._regex = regex.compile(_java_pattern(pattern, "UNICODE_CHARACTER_CLASS" in names), options)

    def __call__(self, text: str) -> list[str]:
        return [piece for piece in self._regex.split(text) if piece]
