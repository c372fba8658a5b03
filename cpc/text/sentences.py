"""Sentence splitting, rule-based and deterministic: the books, the probe sets and ``cpc data text --from``
all split their paragraphs here (tested on abbreviations, quotes, ellipses and numbers)."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["clean", "split_sentences"]

# Words that end in a full stop without ending a sentence (the books' and reviews' usual ones);
# initials (one capital letter) and dotted initialisms (U.S., p.m., e.g.) count as abbreviations too.
_ABBREVIATIONS = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "st",
    "messrs",
    "mme",
    "col",
    "gen",
    "capt",
    "lt",
    "sgt",
    "rev",
    "hon",
    "gov",
    "sen",
    "prof",
    "vs",
    "etc",
    "jr",
    "sr",
    "mt",
    "al",
    "cf",
    "viz",
    "approx",
    "dept",
    "inc",
    "ltd",
    "co",
    "corp",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
}
# Abbreviations only before a number ("No. 5", "Fig. 3"): "no." and "p." otherwise end sentences ("She said no.").
_BEFORE_NUMBER = {"no", "nos", "vol", "ch", "fig", "figs", "p", "pp", "sec", "art", "eq"}
_OVERSTRIKE = re.compile(r".\x08")  # fortunes' bold and underline: a character, a backspace, then the shown one
_CONTROL = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\ufeff]"
)  # control and invisible format characters
# A candidate break: . ! ? (or an ellipsis), closing quotes / brackets kept with the sentence, white space,
# then an upper-case letter or digit, perhaps behind opening quotes.
_BOUNDARY = re.compile(r"([.!?]+[\"')\]]*)\s+(?=[\"'(\[]*[A-Z0-9])")


def clean(text: str) -> str:
    """One line of plain text: Unicode NFKC, typographic quotes as ASCII, Austen's _italics_ marks and
    control characters (fortunes' overstriking) removed, whitespace collapsed."""
    text = (
        unicodedata.normalize("NFKC", text)
        .replace("\u2019", "'")
        .replace("\u2018", "'")
        .replace("\u201c", '"')
        .replace("\u201d", '"')
    )
    text = _CONTROL.sub(" ", _OVERSTRIKE.sub("", text)).replace("_", "")
    return " ".join(text.split())


def _is_abbreviation(before: str, following: str) -> bool:
    """Whether the full stop ending ``before`` belongs to a word ("Mr.", "U.S.", "No. 5") rather than ending the sentence."""
    if not before.endswith(".") or before.endswith(".."):  # ! ? and ellipses end sentences
        return False
    word = before.rsplit(" ", 1)[-1].lstrip("\"'([").rstrip(".")
    lower = word.lower()
    if lower in _ABBREVIATIONS or (lower in _BEFORE_NUMBER and following[:1].isdigit()):
        return True
    return (len(word) == 1 and word.isalpha() and word.isupper() and word != "I") or (
        "." in word and all(part.isalpha() and len(part) <= 2 for part in word.split("."))
    )


def split_sentences(paragraph: str) -> list[str]:
    """A paragraph -> its sentences, in order (rule-based, no model): a break after . ! ? or an ellipsis
    (closing quotes and brackets stay with the sentence) before an upper-case letter or digit, except
    after an abbreviation ("Mr.", "e.g.", "U.S.", an initial; "No."/"Fig." before a number)."""
    paragraph = clean(paragraph)
    sentences, start = [], 0
    for match in _BOUNDARY.finditer(paragraph):
        before = paragraph[start : match.start(1)] + match.group(1).rstrip("\"')]")
        if _is_abbreviation(before, paragraph[match.end() :]):
            continue
        sentences.append(paragraph[start : match.end(1)].strip())
        start = match.end()
    sentences.append(paragraph[start:].strip())
    return [sentence for sentence in sentences if sentence]
