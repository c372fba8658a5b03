"""The 40-class inventory and the engine symbol maps."""

import pytest

from cpc.speech.corpus.phones import (
    ESPEAK_TO_ARPABET,
    FESTIVAL_TO_ARPABET,
    PHONE_TO_ID,
    PHONES,
    SILENCE,
    UnmappedPhoneError,
    map_phone,
)


def test_inventory_is_39_arpabet_phones_plus_silence_at_id_0():
    assert len(PHONES) == 40 and len(set(PHONES)) == 40
    assert PHONE_TO_ID[SILENCE] == 0
    assert PHONE_TO_ID["zh"] == 39


@pytest.mark.parametrize("table", [FESTIVAL_TO_ARPABET, ESPEAK_TO_ARPABET], ids=["festival", "espeak-ng"])
def test_every_engine_symbol_maps_into_the_inventory(table):
    assert set(table.values()) <= set(PHONES)
    assert set(table.values()) == set(PHONES)  # and every class can be produced


def test_known_symbols():
    assert map_phone("ax", "festival") == "ah"
    assert map_phone("pau", "festival") == SILENCE
    assert map_phone("@2", "espeak-ng") == "ah"
    assert map_phone("tS", "espeak-ng") == "ch"


def test_unmapped_symbol_is_an_error_naming_symbol_and_engine():
    with pytest.raises(UnmappedPhoneError, match=r"espeak-ng phone symbol 'Q9' \(in utterance 100-1-0000\)"):
        map_phone("Q9", "espeak-ng", context="utterance 100-1-0000")
    with pytest.raises(UnmappedPhoneError, match="festival phone symbol 'xx'"):
        map_phone("xx", "festival")
