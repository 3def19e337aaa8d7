"""Text analysis as OpenSearch does it, in Python: built-in and custom analyzers from the index
`analysis` settings, each reproducing Lucene's token stream (proven against Lucene 9.9.1 in
tests/conformance/test_analysis_lucene.py).

    analyzer = build_analyzer("english", settings)   # settings: flat `index.*` keys
    analyzer("The Cats' toys")                        # ['cat', 'toi']

The engine indexes the tokens an `Analyzer` returns (tantivy only splits them back apart), so
index and query analysis are one function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import regex

from ....errors import EngineError, UnsupportedQueryError
from .filters import ENGLISH_STOP_WORDS, Stemmer, StopFilter, asciifolding, english_possessive, lowercase, porter
from .tokenizers import MAX_TOKEN_LENGTH, PatternTokenizer, keyword_tokens, letter_tokens, standard_tokens, whitespace_tokens

__all__ = ["Analyzer", "build_analyzer", "BUILTIN_ANALYZERS"]

Tokens = list[str]
BUILTIN_ANALYZERS = ("standard", "simple", "whitespace", "keyword", "stop", "english", "snowball")
# OpenSearch's other built-in analyzers: known, but not reproduced here.
OTHER_OPENSEARCH_ANALYZERS = frozenset(
    "pattern fingerprint arabic armenian basque bengali brazilian bulgarian catalan cjk czech danish dutch "
    "estonian finnish french galician german greek hindi hungarian indonesian irish italian latvian "
    "lithuanian norwegian persian portuguese romanian russian sorani spanish swedish turkish thai".split()
)


@dataclass(frozen=True)
class Analyzer:
    """A tokenizer followed by token filters: `analyzer(text) -> [token, ...]`."""

    name: str
    tokenizer: Callable[[str], Tokens]
    filters: tuple[Callable[[Tokens], Tokens], ...] = ()

    def __call__(self, text: str) -> Tokens:
        tokens = self.tokenizer(text)
        for token_filter in self.filters:
            if not tokens:
                break
            tokens = token_filter(tokens)
        return tokens


def _unsupported(what: str) -> UnsupportedQueryError:
    return UnsupportedQueryError(f"{what} is not supported by the embedded engine")


def _stop_words(spec, default: frozenset[str]) -> frozenset[str]:
    """OpenSearch's `stopwords` setting: `_english_`, `_none_` or a list (or comma-separated string)."""
    if spec is None:
        return default
    if isinstance(spec, str):
        if spec == "_english_":
            return ENGLISH_STOP_WORDS
        if spec == "_none_":
            return frozenset()
        if spec.startswith("_") and spec.endswith("_"):
            raise _unsupported(f"stop word list [{spec}]")
        spec = [w.strip() for w in spec.split(",")]
    if not isinstance(spec, list) or not all(isinstance(w, str) for w in spec):
        raise EngineError(f"stopwords must be a string or a list of strings, got {spec!r}", 400, "illegal_argument_exception")
    return frozenset(spec)


def _max_token_length(config: dict) -> int:
    value = int(config.get("max_token_length", MAX_TOKEN_LENGTH))
    if not 1 <= value <= 1024 * 1024:
        raise EngineError(f"maxTokenLength must be greater than 0 and less than 1048576, got {value}", 400, "illegal_argument_exception")
    return value


def _check_keys(kind: str, config: dict, allowed: set[str]) -> None:
    unknown = set(config) - allowed - {"type"}
    if unknown:
        raise _unsupported(f"{kind} setting(s) {sorted(unknown)}")


# --- tokenizers --------------------------------------------------------------------------------
def _tokenizer(name: str, analysis: dict) -> Callable[[str], Tokens]:
    config = analysis.get("tokenizer", {}).get(name)
    if config is None:
        config = {"type": name}
    kind = config.get("type")
    if kind == "standard":
        _check_keys("standard tokenizer", config, {"max_token_length"})
        length = _max_token_length(config)
        return standard_tokens if length == MAX_TOKEN_LENGTH else lambda text: standard_tokens(text, length)
    if kind in ("letter", "whitespace", "keyword"):
        _check_keys(f"{kind} tokenizer", config, set())
        return {"letter": letter_tokens, "whitespace": whitespace_tokens, "keyword": keyword_tokens}[kind]
    if kind == "lowercase":
        _check_keys("lowercase tokenizer", config, set())
        return lambda text: lowercase(letter_tokens(text))
    if kind == "pattern":
        _check_keys("pattern tokenizer", config, {"pattern", "flags", "group"})
        if int(config.get("group", -1)) != -1:
            raise _unsupported("pattern tokenizer [group] other than -1")
        try:
            return PatternTokenizer(config.get("pattern", r"\W+"), config.get("flags", ""))
        except (ValueError, regex.error) as exc:
            raise EngineError(f"tokenizer [{name}]: invalid pattern: {exc}", 400, "illegal_argument_exception") from None
    raise _unsupported(f"tokenizer [{name}] (type [{kind}])")


# --- token filters -----------------------------------------------------------------------------
def _snowball(language: str) -> Callable[[Tokens], Tokens]:
    language = str(language).lower()
    if language not in ("english", "porter"):
        raise _unsupported(f"snowball language [{language}]")
    return Stemmer(language)


def _token_filter(name: str, analysis: dict) -> Callable[[Tokens], Tokens]:
    config = analysis.get("filter", {}).get(name)
    if config is None:
        config = {"type": name}
    kind = config.get("type")
    if kind == "lowercase":
        _check_keys("lowercase filter", config, set())
        return lowercase
    if kind == "asciifolding":
        _check_keys("asciifolding filter", config, {"preserve_original"})
        preserve = str(config.get("preserve_original", False)).lower() == "true"
        return (lambda tokens: asciifolding(tokens, True)) if preserve else asciifolding
    if kind == "stop":
        _check_keys("stop filter", config, {"stopwords", "ignore_case", "remove_trailing"})
        if str(config.get("remove_trailing", True)).lower() != "true":
            raise _unsupported("stop filter [remove_trailing: false]")
        ignore_case = str(config.get("ignore_case", False)).lower() == "true"
        return StopFilter(_stop_words(config.get("stopwords"), ENGLISH_STOP_WORDS), ignore_case)
    if kind == "porter_stem":
        _check_keys("porter_stem filter", config, set())
        return porter
    if kind == "snowball":
        _check_keys("snowball filter", config, {"language"})
        return _snowball(config.get("language", "English"))
    if kind == "stemmer":
        _check_keys("stemmer filter", config, {"language", "name"})
        language = str(config.get("language", config.get("name", "english"))).lower()
        if language in ("english", "porter"):
            return porter  # OpenSearch maps both to Lucene's PorterStemFilter
        if language == "porter2":
            return Stemmer("english")
        if language == "possessive_english":
            return english_possessive
        raise _unsupported(f"stemmer language [{language}]")
    raise _unsupported(f"token filter [{name}] (type [{kind}])")


# --- analyzers ---------------------------------------------------------------------------------
def _builtin(name: str, kind: str, config: dict) -> Analyzer:
    if kind == "standard":
        _check_keys("standard analyzer", config, {"stopwords", "max_token_length"})
        length = _max_token_length(config)
        words = _stop_words(config.get("stopwords"), frozenset())
        tokenizer = standard_tokens if length == MAX_TOKEN_LENGTH else (lambda text: standard_tokens(text, length))
        return Analyzer(name, tokenizer, (lowercase,) + ((StopFilter(words),) if words else ()))
    if kind in ("simple", "whitespace", "keyword"):
        _check_keys(f"{kind} analyzer", config, set())
        if kind == "simple":
            return Analyzer(name, letter_tokens, (lowercase,))
        return Analyzer(name, whitespace_tokens if kind == "whitespace" else keyword_tokens)
    if kind == "stop":
        _check_keys("stop analyzer", config, {"stopwords"})
        return Analyzer(name, letter_tokens, (lowercase, StopFilter(_stop_words(config.get("stopwords"), ENGLISH_STOP_WORDS))))
    if kind == "english":
        _check_keys("english analyzer", config, {"stopwords", "stem_exclusion"})
        if config.get("stem_exclusion"):
            raise _unsupported("english analyzer [stem_exclusion]")
        words = StopFilter(_stop_words(config.get("stopwords"), ENGLISH_STOP_WORDS))
        return Analyzer(name, standard_tokens, (english_possessive, lowercase, words, porter))
    if kind == "snowball":
        _check_keys("snowball analyzer", config, {"language", "stopwords"})
        language = str(config.get("language", "English"))
        default = ENGLISH_STOP_WORDS if language.lower() == "english" else frozenset()
        words = _stop_words(config.get("stopwords"), default)
        head = (english_possessive,) if language.lower() in ("english", "porter") else ()
        return Analyzer(name, standard_tokens, head + (lowercase,) + ((StopFilter(words),) if words else ()) + (_snowball(language),))
    raise _unsupported(f"analyzer [{name}] (type [{kind}])")


def build_analyzer(name: str, settings: dict) -> Analyzer:
    """The analyzer `name` as an index with these (flat, `index.`-prefixed) settings defines it:
    an analyzer from `index.analysis.analyzer`, else a built-in one. Raises UnsupportedQueryError
    for what cannot be reproduced exactly, EngineError 400 for invalid definitions."""
    analysis = settings.get("index.analysis", {}) or {}
    config = analysis.get("analyzer", {}).get(name)
    if config is None:
        if name in OTHER_OPENSEARCH_ANALYZERS:
            raise _unsupported(f"analyzer [{name}]")
        if name not in BUILTIN_ANALYZERS:
            raise EngineError(f"analyzer [{name}] has not been configured in mappings", 400, "mapper_parsing_exception")
        return _builtin(name, name, {})
    kind = config.get("type", "custom")
    if kind != "custom":
        return _builtin(name, kind, config)
    _check_keys("custom analyzer", config, {"tokenizer", "filter", "char_filter", "position_increment_gap"})
    if config.get("char_filter"):
        raise _unsupported(f"analyzer [{name}]: char_filter")
    if "tokenizer" not in config:
        raise EngineError(f"custom analyzer [{name}] must be configured with a tokenizer", 400, "illegal_argument_exception")
    filters = config.get("filter", [])
    filters = [filters] if isinstance(filters, str) else filters
    return Analyzer(name, _tokenizer(config["tokenizer"], analysis), tuple(_token_filter(f, analysis) for f in filters))
