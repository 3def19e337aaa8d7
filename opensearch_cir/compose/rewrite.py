"""Rule-based caption rewriting: apply a modification text to the reference caption.

A light stand-in for CIReVL's LLM rewriter. The modification is split into clauses (on ",", ";",
" and ", " but ") and each clause is matched against these rules, first match wins:

| rule       | examples                                                     | effect on the caption             |
|------------|--------------------------------------------------------------|-----------------------------------|
| replace    | "replace X with Y", "change X to Y", "swap X for Y", "Y instead of X", "X to Y" | X → Y (if X is absent: as if the clause were just "Y") |
| remove     | "without X", "no X", "remove X", "take off the X", "minus X"  | X (and a "with" before it) deleted; X becomes a negative term |
| colour     | "in red", "in navy blue instead", "make it red", "red instead", "change the colour to red" | every colour phrase → red (or red inserted before the head noun) |
| gender     | "for women", "the women's version", "make it for boys"      | gender word → the new one (or appended) |
| article    | "make it a shirt", "a shirt instead", "as a shirt", "turn it into a shirt" | the head noun → shirt |
| add        | "add a hood", "with a hood"                                  | "with a hood" appended            |
| fallback   | anything else                                                | the clause appended               |

The head noun of a caption is the last word that is not a stop word or a number, which fits
head-final noun phrases such as product titles ("Puma Men's Black T-shirt") and short captions.
If a caption word shares its last hyphen/letter part with the new noun ("T-shirt" / "shirt") that
word is replaced instead. Rewriting is deterministic and never loses the modification: what no
rule explains is appended.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

COLOURS = (
    "beige", "black", "blue", "bronze", "brown", "burgundy", "charcoal", "coffee brown", "copper",
    "cream", "fluorescent green", "gold", "golden", "green", "grey", "grey melange", "gray", "khaki",
    "lavender", "lime green", "magenta", "maroon", "mauve", "metallic", "multi", "multicoloured",
    "mushroom brown", "mustard", "navy", "navy blue", "nude", "off white", "olive", "orange", "peach",
    "pink", "purple", "red", "rose", "rust", "sea green", "silver", "skin", "steel", "tan", "taupe",
    "teal", "turquoise", "turquoise blue", "violet", "white", "yellow", "dark blue", "light blue",
    "dark green", "light green", "dark grey", "light grey", "dark red", "light pink",
)  # fmt: skip
GENDER_WORDS = {
    "men": "men", "men's": "men", "mens": "men", "man": "men", "male": "men",
    "women": "women", "women's": "women", "womens": "women", "woman": "women", "female": "women",
    "boys": "boys", "boy": "boys", "boy's": "boys", "girls": "girls", "girl": "girls", "girl's": "girls",
    "unisex": "unisex", "kids": "kids", "kid's": "kids",
}  # fmt: skip
_STOP = {"a", "an", "the", "of", "with", "and", "in", "on", "for", "to", "at", "by", "is", "are", "it", "its"}

_COLOUR_RE = re.compile(r"\b(" + "|".join(sorted(map(re.escape, COLOURS), key=len, reverse=True)) + r")\b", re.I)
_WORD_RE = re.compile(r"[^\s]+")
_SPLIT_RE = re.compile(r"\s*(?:[,;]|\band\b|\bbut\b|\balso\b)\s*", re.I)
_FILLER = r"(?:please\s+|i\s+want\s+|i'd\s+like\s+|same\s+(?:one\s+)?|same\s+but\s+|now\s+|just\s+)*"
_ARTICLE = r"(?:(?:a|an|the|some)\s+)?"


@dataclass
class Rewrite:
    """A rewritten caption: `text` for BM25 and the text encoder, `negatives` from "without …"."""

    text: str
    negatives: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)


def rewrite_caption(caption: str, modification: str) -> Rewrite:
    """Apply `modification` to `caption` (see the module docstring for the rules)."""
    result = Rewrite(text=" ".join(caption.split()))
    for clause in _clauses(modification):
        _apply(result, clause)
    result.text = " ".join(result.text.split())
    return result


def split_clauses(modification: str) -> list[str]:
    """The modification's clauses, split where the rules split it ("in red and without a hood" → 2)."""
    return _clauses(modification)


def _clauses(modification: str) -> list[str]:
    text = " ".join(modification.strip().rstrip(".!").split())
    # keep "replace X with Y" / "X instead of Y" whole: only split where a clause boundary is
    return [c.strip() for c in _SPLIT_RE.split(text) if c and c.strip()]


def _apply(result: Rewrite, clause: str) -> None:
    lowered = clause.lower()
    if re.fullmatch(r"(?:the\s+)?same(?:\s+one)?|" + _FILLER.rstrip("*") + "+", lowered):
        return  # "same but in red": the "same" part changes nothing
    for name, pattern, handler in _RULES:
        match = re.fullmatch(_FILLER + pattern, lowered)
        if match:
            handler(result, *[g.strip() for g in match.groups()])
            result.rules.append(name)
            return
    if _COLOUR_RE.fullmatch(lowered) or lowered in GENDER_WORDS:  # a bare "red" or "unisex"
        _change_to(result, lowered)
        result.rules.append("change")
        return
    result.text = f"{result.text} {clause}"
    result.rules.append("append")


def _replace(result: Rewrite, old: str, new: str) -> None:
    pattern = re.compile(rf"\b{re.escape(old)}\b", re.I)
    if pattern.search(result.text):
        result.text = pattern.sub(new, result.text)
    else:
        _change_to(result, new)


def _replace_swapped(result: Rewrite, new: str, old: str) -> None:
    _replace(result, old, new)


def _remove(result: Rewrite, thing: str) -> None:
    thing = re.sub(rf"^{_ARTICLE}", "", thing)
    result.negatives.append(thing)
    pattern = re.compile(rf"\s*\b(?:with\s+)?{_ARTICLE}{re.escape(thing)}\b", re.I)
    result.text = pattern.sub("", result.text)


def _change_to(result: Rewrite, new: str, otherwise: str = "article") -> None:
    """A target phrase without a named source: a colour, a gender, else a new head noun
    (`otherwise="article"`) or an appended qualifier (`otherwise="append"`)."""
    if re.search(r"\s(?:version|style)$", new):  # "a sports version" qualifies, it names no new thing
        otherwise = "append"
    new = _strip_trailer(new)
    if _COLOUR_RE.fullmatch(new):
        _colour(result, new)
    elif new.removeprefix("for ").replace("'s", "") in GENDER_WORDS:
        _gender(result, new.removeprefix("for "))
    elif otherwise == "article":
        _article(result, re.sub(rf"^{_ARTICLE}", "", new))
    else:
        result.text = f"{result.text} {new}"


def _strip_trailer(phrase: str) -> str:
    phrase = re.sub(r"\s+(?:instead|version|one|colou?r|style)$", "", phrase)
    return re.sub(rf"^{_ARTICLE}", "", phrase).strip()


def _qualify(prefix: str):
    def handler(result: Rewrite, new: str) -> None:
        new = _strip_trailer(new)
        if _COLOUR_RE.fullmatch(new) or new.replace("'s", "") in GENDER_WORDS:
            _change_to(result, new)
        else:
            result.text = f"{result.text} {prefix} {new}".rstrip()

    return handler


def _colour(result: Rewrite, colour: str) -> None:
    if _COLOUR_RE.search(result.text):
        result.text = _COLOUR_RE.sub(colour, result.text)
    else:
        words = result.text.split()
        head = _head_index(words)
        words.insert(head if head is not None else len(words), colour)
        result.text = " ".join(words)


def _gender(result: Rewrite, gender: str) -> None:
    gender = GENDER_WORDS.get(gender.replace("'s", "").strip(), gender)
    words = result.text.split()
    for i, word in enumerate(words):
        if word.lower() in GENDER_WORDS:
            words[i] = gender
            result.text = " ".join(words)
            return
    result.text = f"{result.text} for {gender}"


def _article(result: Rewrite, noun: str) -> None:
    words = result.text.split()
    last = noun.split()[-1]
    for i in range(len(words) - 1, -1, -1):
        parts = re.split(r"[-/]", words[i].lower())
        if len(parts) > 1 and parts[-1] == last:
            words[i] = noun
            result.text = " ".join(words)
            return
    head = _head_index(words)
    if head is None:
        result.text = f"{result.text} {noun}"
        return
    start = head
    modifiers = len(noun.split()) - 1
    if modifiers and _same_noun(words[head], last):  # "Formal Shoes" -> "casual shoes": swap the modifiers too
        start = max(0, head - modifiers)
        while start < head and (_COLOUR_RE.fullmatch(words[start]) or words[start].lower() in GENDER_WORDS):
            start += 1
    words[start:head + 1] = [noun]
    result.text = " ".join(words)


def _same_noun(word: str, other: str) -> bool:
    """Equal up to case and a plural "s": "Bags" ~ "bag"."""
    return word.lower().rstrip("s") == other.lower().rstrip("s")


def _add(result: Rewrite, thing: str) -> None:
    result.text = f"{result.text} with {thing}"


def _head_index(words: list[str]) -> int | None:
    for i in range(len(words) - 1, -1, -1):
        token = re.sub(r"[^\w'-]", "", words[i].lower())
        if token and token not in _STOP and not token.isdigit() and token not in GENDER_WORDS:
            return i
    return None


_RULES = (
    ("replace", r"(?:replace|swap|switch|exchange)\s+(?:the\s+)?(.+?)\s+(?:with|for|by)\s+(?:a\s+|an\s+)?(.+)", _replace),
    ("replace", r"(?:change|turn)\s+(?!(?:the\s+)?(?:it|colou?r)\b)(?:the\s+)?(.+?)\s+(?:to|into)\s+(?:a\s+|an\s+)?(.+)", _replace),
    ("replace", r"(?:a\s+|an\s+)?(.+?)\s+instead\s+of\s+(?:a\s+|an\s+|the\s+)?(.+)", _replace_swapped),
    ("remove", r"(?:without|no|remove|minus|take\s+off|drop|lose)\s+(.+)", _remove),
    ("change", r"(?:change|turn|make)\s+(?:the\s+)?colou?r\s+(?:to\s+|into\s+)?(.+)", _change_to),
    ("change", r"(?:make\s+it|turn\s+it\s+into|change\s+it\s+(?:to|into)|as|a|an|into)\s+(.+)", _change_to),
    ("change", r"in\s+(.+)", _qualify("in")),
    ("change", r"for\s+(.+)", _qualify("for")),
    ("change", r"(.+?)\s+(?:instead|version|one|style)", lambda r, new: _change_to(r, new, otherwise="append")),
    ("add", r"(?:add|with|plus)\s+(.+)", _add),
)


def is_colour(phrase: str) -> bool:
    """True when `phrase` is one of the known colour names (case-insensitive)."""
    return bool(_COLOUR_RE.fullmatch(phrase.strip()))
