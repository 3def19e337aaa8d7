"""The Porter stemmer as Lucene's `PorterStemFilter` runs it: Martin Porter's reference (C/Java)
implementation, which departs from the published algorithm (and from Snowball's `porter`) in
step 2: `bli -> ble` replaces `abli -> able`, and `logi -> log` is added.

Written from the algorithm's description (https://tartarus.org/martin/PorterStemmer/); words of
one or two letters are left alone, as in the reference implementation.
"""

from __future__ import annotations

from functools import lru_cache

_STEP2 = {
    "a": (("ational", "ate"), ("tional", "tion")),
    "c": (("enci", "ence"), ("anci", "ance")),
    "e": (("izer", "ize"),),
    "l": (("bli", "ble"), ("alli", "al"), ("entli", "ent"), ("eli", "e"), ("ousli", "ous")),
    "o": (("ization", "ize"), ("ation", "ate"), ("ator", "ate")),
    "s": (("alism", "al"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous")),
    "t": (("aliti", "al"), ("iviti", "ive"), ("biliti", "ble")),
    "g": (("logi", "log"),),
}
_STEP3 = {
    "e": (("icate", "ic"), ("ative", ""), ("alize", "al")),
    "i": (("iciti", "ic"),),
    "l": (("ical", "ic"), ("ful", "")),
    "s": (("ness", ""),),
}
_STEP4 = {
    "a": ("al",), "c": ("ance", "ence"), "e": ("er",), "i": ("ic",), "l": ("able", "ible"),
    "n": ("ant", "ement", "ment", "ent"), "o": ("ion", "ou"), "s": ("ism",), "t": ("ate", "iti"),
    "u": ("ous",), "v": ("ive",), "z": ("ize",),
}


class _Word:
    """The reference implementation's state: the buffer `b`, its end `k` and the stem end `j`."""

    def __init__(self, word: str):
        self.b = list(word)
        self.k = len(word) - 1
        self.j = 0

    def cons(self, i: int) -> bool:
        ch = self.b[i]
        if ch in "aeiou":
            return False
        if ch == "y":
            return i == 0 or not self.cons(i - 1)
        return True

    def m(self) -> int:
        """The measure of b[0..j]: its number of vowel-consonant transitions ([C](VC)^m[V])."""
        n, after_vowel = 0, False
        for i in range(self.j + 1):
            consonant = self.cons(i)
            n += consonant and after_vowel
            after_vowel = not consonant
        return n

    def vowel_in_stem(self) -> bool:
        return any(not self.cons(i) for i in range(self.j + 1))

    def double_consonant(self, j: int) -> bool:
        return j >= 1 and self.b[j] == self.b[j - 1] and self.cons(j)

    def cvc(self, i: int) -> bool:
        if i < 2 or not self.cons(i) or self.cons(i - 1) or not self.cons(i - 2):
            return False
        return self.b[i] not in "wxy"

    def ends(self, suffix: str) -> bool:
        length = len(suffix)
        if length > self.k + 1 or "".join(self.b[self.k - length + 1 : self.k + 1]) != suffix:
            return False
        self.j = self.k - length
        return True

    def set_to(self, text: str) -> None:
        self.b[self.j + 1 :] = list(text)
        self.k = self.j + len(text)

    def replace_if_measure(self, text: str) -> None:
        if self.m() > 0:
            self.set_to(text)

    def step1ab(self) -> None:
        if self.b[self.k] == "s":
            if self.ends("sses"):
                self.k -= 2
            elif self.ends("ies"):
                self.set_to("i")
            elif self.k >= 1 and self.b[self.k - 1] != "s":
                self.k -= 1
            del self.b[self.k + 1 :]
        if self.ends("eed"):
            if self.m() > 0:
                self.k -= 1
        elif (self.ends("ed") or self.ends("ing")) and self.vowel_in_stem():
            self.k = self.j
            del self.b[self.k + 1 :]
            if self.ends("at"):
                self.set_to("ate")
            elif self.ends("bl"):
                self.set_to("ble")
            elif self.ends("iz"):
                self.set_to("ize")
            elif self.double_consonant(self.k):
                if self.b[self.k] not in "lsz":
                    self.k -= 1
            else:
                self.j = self.k
                if self.m() == 1 and self.cvc(self.k):
                    self.set_to("e")
        del self.b[self.k + 1 :]

    def step1c(self) -> None:
        if self.ends("y") and self.vowel_in_stem():
            self.b[self.k] = "i"

    def step_table(self, table: dict, key_offset: int) -> None:
        if self.k - key_offset < 0:
            return
        for suffix, replacement in table.get(self.b[self.k - key_offset], ()):
            if self.ends(suffix):
                self.replace_if_measure(replacement)
                break
        del self.b[self.k + 1 :]

    def step4(self) -> None:
        if self.k < 1:
            return
        for suffix in _STEP4.get(self.b[self.k - 1], ()):
            if self.ends(suffix):
                if suffix == "ion" and not (self.j >= 0 and self.b[self.j] in "st"):
                    continue
                if self.m() > 1:
                    self.k = self.j
                    del self.b[self.k + 1 :]
                return

    def step5(self) -> None:
        self.j = self.k
        if self.b[self.k] == "e":
            a = self.m()
            if a > 1 or (a == 1 and not self.cvc(self.k - 1)):
                self.k -= 1
        if self.b[self.k] == "l" and self.double_consonant(self.k) and self.m() > 1:
            self.k -= 1
        del self.b[self.k + 1 :]


@lru_cache(maxsize=65_536)
def porter_stem(word: str) -> str:
    """One word stemmed like Lucene's `PorterStemmer`."""
    if len(word) <= 2:
        return word
    w = _Word(word)
    w.step1ab()
    if w.k > 0:
        w.step1c()
        w.step_table(_STEP2, 1)
        w.step_table(_STEP3, 0)
        w.step4()
        w.step5()
    return "".join(w.b[: w.k + 1])
