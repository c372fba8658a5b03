"""The shared phone inventory (39 ARPAbet phones + silence) and each engine's symbol map.

Design notes
------------
* 40 classes: the 39 phones of the CMU pronouncing dictionary (ARPAbet without stress) plus
  ``sil``. This is the CMU/TIMIT-folded convention; the CPC LibriSpeech-100 release uses 41
  classes of its own and is read with integer names (see :mod:`cpc.speech.corpus.formats`).
* Class id = position in :data:`PHONES`, with ``sil`` at id 0, so an alignment file written
  today stays readable as long as this list keeps its order. Never reorder it.
* Labels follow General American as the CMU dictionary writes it: reduced vowels fold to
  ``ah``, syllabic consonants to their plain consonant, flaps and glottal stops to ``t``,
  r-coloured diphthongs (espeak-ng ``O@``, ``e@``) to their vowel. A symbol with no entry in
  an engine's map is an error (:class:`UnmappedPhoneError`), never a silent "other" class:
  a new engine version that adds a symbol must be looked at by a person.
* espeak-ng reports a few zero-content markers as phoneme events (``;`` between two vowels,
  ``||``-style boundaries). They are listed in :data:`ESPEAK_CONTINUATION` and extend the
  previous phone instead of starting a segment.
"""

from __future__ import annotations

__all__ = [
    "PHONES",
    "SILENCE",
    "PHONE_TO_ID",
    "FESTIVAL_TO_ARPABET",
    "ESPEAK_TO_ARPABET",
    "ESPEAK_CONTINUATION",
    "UnmappedPhoneError",
    "map_phone",
]

SILENCE = "sil"

# fmt: off
PHONES: tuple[str, ...] = (
    SILENCE,
    "aa", "ae", "ah", "ao", "aw", "ay", "b", "ch", "d", "dh",
    "eh", "er", "ey", "f", "g", "hh", "ih", "iy", "jh", "k",
    "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh",
    "t", "th", "uh", "uw", "v", "w", "y", "z", "zh",
)
# fmt: on
assert len(PHONES) == 40 and len(set(PHONES)) == 40

PHONE_TO_ID: dict[str, int] = {phone: index for index, phone in enumerate(PHONES)}

# Festival's "radio" phone set (kal, ked) and the CMU phone set of the slt HTS voice: the 39
# phones map to themselves, plus these extras.
FESTIVAL_TO_ARPABET: dict[str, str] = {phone: phone for phone in PHONES if phone != SILENCE}
FESTIVAL_TO_ARPABET.update(
    {
        "pau": SILENCE, "h#": SILENCE, "brth": SILENCE, "#": SILENCE,
        "ax": "ah", "axr": "er", "dx": "t", "el": "l", "em": "m", "en": "n", "nx": "n", "hv": "hh",
    }
)  # fmt: skip

# espeak-ng English phoneme names (accents en, en-us, en-us-nyc, en-gb-x-rp, en-029,
# en-gb-scotland), collected from its phoneme events over the whole Bible text.
ESPEAK_TO_ARPABET: dict[str, str] = {
    # pauses
    "_": SILENCE, "_:": SILENCE, "_!": SILENCE, "_^_": SILENCE,
    # stops and affricates
    "p": "p", "b": "b", "t": "t", "d": "d", "k": "k", "g": "g",
    "t#": "t", "t2": "t", "t[": "t", "?": "t", "tS": "ch", "dZ": "jh",
    # fricatives
    "f": "f", "v": "v", "T": "th", "D": "dh", "s": "s", "z": "z", "S": "sh", "Z": "zh", "h": "hh", "x": "hh",
    # nasals and approximants
    "m": "m", "n": "n", "N": "ng", "n-": "n", "m-": "m", "l": "l", "@L": "l", "l/": "l",
    "r": "r", "r-": "r", "w": "w", "w#": "w", "j": "y",
    # monophthongs
    "I": "ih", "I2": "ih", "I#": "ih", "i": "iy", "i:": "iy", "E": "eh", "a": "ae", "aa": "ae",
    "a#": "ah", "V": "ah", "@": "ah", "@2": "ah", "@5": "ah", "@-": "ah",
    "3": "er", "3:": "er", "VR": "er", "IR": "er",
    "0": "aa", "O": "ao", "A:": "aa", "A@": "aa", "O:": "ao", "O2": "ao", "O@": "ao", "o@": "ao",
    "U": "uh", "U@": "uh", "u:": "uw",
    # diphthongs
    "eI": "ey", "e@": "eh", "i@": "ih", "i@3": "iy",
    "aI": "ay", "aI2": "ay", "aI3": "ay", "aI@": "ay", "aU": "aw", "oU": "ow", "OI": "oy",
}  # fmt: skip

# espeak-ng events that carry no sound of their own: they extend the phone before them.
ESPEAK_CONTINUATION: frozenset[str] = frozenset({";", "||", "|"})

_MAPS = {"festival": FESTIVAL_TO_ARPABET, "espeak-ng": ESPEAK_TO_ARPABET}


class UnmappedPhoneError(ValueError):
    """An engine produced a phone symbol that has no entry in its map to the shared inventory."""


def map_phone(symbol: str, engine: str, *, context: str = "") -> str:
    """Map one engine symbol (e.g. festival ``"ax"``, espeak-ng ``"@2"``) to a name in :data:`PHONES`.

    Raises :class:`UnmappedPhoneError` naming the symbol, the engine and ``context`` (e.g. the
    utterance being synthesised) when the symbol is not in the engine's map.
    """
    try:
        table = _MAPS[engine]
    except KeyError:
        raise ValueError(f"unknown engine {engine!r}; expected one of {sorted(_MAPS)}") from None
    try:
        return table[symbol]
    except KeyError:
        where = f" (in {context})" if context else ""
        raise UnmappedPhoneError(
            f"{engine} phone symbol {symbol!r}{where} has no entry in the map to the 40-phone inventory; "
            f"add it to cpc/speech/corpus/phones.py"
        ) from None
