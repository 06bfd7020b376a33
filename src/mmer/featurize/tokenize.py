"""Word tokenisation for GloVe 6B, following the conventions of the corpus the vectors were trained on.

GloVe 6B was trained on lower-cased text split by the Stanford (Penn-Treebank style) tokenizer, so its vocabulary
holds clitics as separate words ("do" + "n't", "it" + "'s", "ca" + "n't"), punctuation as words (",", "...", "--")
and compounds with inner hyphens or dots ("e-mail", "u.s.", "3.5", "1,000"). `word_tokens` reproduces those
conventions with a few regular expressions, so most words of a transcript find their vector:

1. Unicode NFKC normalisation ("…" -> "...", full-width forms -> ASCII), typographic quotes and dashes mapped to
   their ASCII forms ("’" -> "'", "“" -> '"', "—" -> " -- "), invisible format characters (BOM, zero-width) removed.
2. Lower-casing.
3. Splitting into: letter-dot abbreviations ("u.s."), words and numbers with inner "-", "'" or "." (and "," / ":"
   between digits: "1,000", "10:30"), runs of dots or dashes, and any other single symbol. A final period is a
   token of its own, except in letter-dot abbreviations.
4. Clitic splitting: a word ending in n't, 's, 're, 've, 'll, 'm or 'd is split before the clitic.

The result depends on the text only (never on a vocabulary), so it is the same on every machine. What happens to
words that have no vector is the encoder's business (see `mmer.featurize.glove`).
"""

from __future__ import annotations

import re
import unicodedata

_TRANSLATE = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u00b4": "'", "\u2032": "'",
        "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
        "\u2013": " -- ", "\u2014": " -- ", "\u2015": " -- ",
    }
)

_TOKEN = re.compile(
    r"""
      (?:[^\W\d_]\.){2,}                          # letter-dot abbreviations: u.s., a.m.
    | [^\W_]+(?:[-'.][^\W_]+|(?<=\d)[,:]\d+)*     # words, numbers, compounds: e-mail, don't, 3.5, 1,000, 10:30
    | \.{2,} | -{2,}                             # ellipsis, dash
    | \S                                         # any other single symbol (including a lone "_")
    """,
    re.VERBOSE,
)

_CLITIC = re.compile(r"^(.+?)(n't|'s|'re|'ve|'ll|'m|'d)$")


def normalize_text(text: str) -> str:
    """NFKC, ASCII quotes and dashes, no invisible format characters, lower case."""
    text = unicodedata.normalize("NFKC", text).translate(_TRANSLATE)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return text.lower()


def word_tokens(text: str) -> list[str]:
    """Penn-Treebank-style lower-cased tokens of `text` (see the module docstring for the rules)."""
    tokens: list[str] = []
    for token in _TOKEN.findall(normalize_text(text)):
        clitic = _CLITIC.match(token)
        if clitic:
            tokens.extend(clitic.groups())
        else:
            tokens.append(token)
    return tokens


def compound_parts(token: str) -> list[str]:
    """The letter/digit runs of a compound token ("y'all" -> ["y", "all"]); the fallback for unknown compounds."""
    return re.findall(r"[^\W_]+", token)
