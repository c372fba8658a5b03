"""espeak-ng through its C library, with the phoneme events that give each phone's start sample.

Design notes
------------
* The ``espeak-ng`` command prints phonemes (``-x``) but no timings, and ``--pho`` works only
  with MBROLA voices; the PyPI bindings expose no events. The library does: initialised with
  ``espeakINITIALIZE_PHONEME_EVENTS``, its synthesis callback receives, next to each audio
  chunk, events of type ``espeakEVENT_PHONEME`` whose ``sample`` field is the phone's first
  output sample (22,050 Hz) and whose ``id.string`` is the phoneme name (``"@2"``, ``"eI"``).
* espeak-ng keeps global state (voice, parameters). Switching voices inside one process made
  some variants differ between runs, so the builder calls :func:`synthesize` from a fresh
  process per batch (``multiprocessing.Pool(maxtasksperchild=1)``) and never mixes voices.
* espeak-ng's voice variants (``+f5``: breath, flutter) draw noise from the C library's
  ``rand()``, whose state is per process: a pool worker forked from a process that had drawn
  from it (espeak-ng itself, or any C extension) inherited that state, so the same build could
  give other bytes. :func:`synthesize` therefore starts from ``srand(1)``, the state of a fresh
  process (C: unseeded ``rand()`` is seeded with 1), so builds keep the bytes a fresh parent
  gave. That is not all of espeak-ng's state: a second call in the same process still differs
  from the first (measured), hence the fresh process per batch above.
* Prosody inside an utterance: with per-word factors the text is sent as SSML, each word in
  ``<prosody rate="R%" pitch="±P%">``; espeak-ng changes speed and pitch from word to word
  within a clause, and its phoneme events still give the times it spoke each phone at. The
  first phone can start a few milliseconds into the wave (the caller labels that ``sil``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from xml.sax.saxutils import escape

import numpy as np

__all__ = ["EspeakError", "load_library", "synthesize"]

APT_INSTALL = "apt-get install espeak-ng"

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_SSML = 0x10
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_PARAMETER_PITCH = 3
_DEFAULT_PITCH = 50  # espeak-ng's own default for espeakPITCH (0..100)


class EspeakError(RuntimeError):
    """espeak-ng is missing or refused a request; the message says what to do."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` from speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # output sample index
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))

_library = None
_sample_rate = 0
_chunks: list[np.ndarray] = []
_events: list[tuple[int, str]] = []


def load_library() -> ctypes.CDLL:
    """Load ``libespeak-ng`` (raises :class:`EspeakError` with the apt-get line when absent)."""
    global _library
    if _library is None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            _library = ctypes.CDLL(name)
        except OSError as error:
            raise EspeakError(
                f"the espeak-ng library ({name}) is not installed: run `{APT_INSTALL}` ({error})"
            ) from None
    return _library


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def _on_audio(wave, num_samples, events):  # called by espeak-ng from inside espeak_Synth
    if num_samples > 0:
        _chunks.append(np.ctypeslib.as_array(wave, shape=(num_samples,)).copy())
    index = 0
    while events[index].type != _EVENT_LIST_TERMINATED:
        event = events[index]
        if event.type == _EVENT_PHONEME:
            _events.append((event.sample, event.id.string.decode("utf-8")))
        index += 1
    return 0


_callback = _CALLBACK(_on_audio)  # kept at module level so it is never garbage-collected


def _initialise() -> None:
    global _sample_rate
    if _sample_rate:
        return
    library = load_library()
    _sample_rate = library.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INITIALIZE_PHONEME_EVENTS)
    if _sample_rate <= 0:
        raise EspeakError(
            f"espeak_Initialize failed (returned {_sample_rate}); is espeak-ng-data installed? `{APT_INSTALL}`"
        )
    library.espeak_SetSynthCallback(_callback)


def ssml(text: str, stretches: list[float], pitches: list[float]) -> str:
    """``text`` as SSML with word i spoken ``stretches[i]`` times as long and ``pitches[i]`` times as high."""
    words = text.split()
    if not len(words) == len(stretches) == len(pitches):
        raise ValueError(
            f"{len(words)} words but {len(stretches)} stretches and {len(pitches)} pitch factors: {text!r}"
        )
    spans = [
        f'<prosody rate="{100 / stretch:.1f}%" pitch="{100 * (pitch - 1):+.1f}%">{escape(word)}</prosody>'
        for word, stretch, pitch in zip(words, stretches, pitches)
    ]
    return " ".join(spans)  # no <speak> root: inside one, espeak-ng ends the text with a 0.3 s pause


def synthesize(
    voice: str,
    texts: list[str],
    *,
    pitches: list[float] | None = None,
    prosody: list[tuple[list[float], list[float]]] | None = None,
) -> tuple[int, list[tuple[np.ndarray, list[tuple[int, str]]]]]:
    """Synthesise ``texts`` with one espeak-ng voice (e.g. ``"en-us+m3"``).

    ``pitches[i]`` scales espeak-ng's pitch parameter for text i (50 = the voice's default, so
    1.1 → 55; default 1.0). ``prosody[i]`` = (duration stretches, pitch factors), one per
    whitespace-separated word of text i (see :func:`ssml`); default: none.
    Returns ``(sample_rate, [(wave, events), ...])``: ``wave`` is float32 in [-1, 1] at the
    engine's rate (22,050 Hz), ``events`` lists ``(start_sample, phoneme_name)`` in order.
    """
    _initialise()
    _libc().srand(1)  # espeak-ng's noise comes from rand(): start where a fresh process starts (module docstring)
    library = load_library()
    if library.espeak_SetVoiceByName(voice.encode()) != 0:
        raise EspeakError(f"espeak-ng does not know the voice {voice!r} (see `espeak-ng --voices=en`)")
    pitches = [1.0] * len(texts) if pitches is None else pitches
    results = []
    for index, (text, pitch) in enumerate(zip(texts, pitches, strict=True)):
        library.espeak_SetParameter(_PARAMETER_PITCH, int(round(_DEFAULT_PITCH * pitch)), 0)
        _chunks.clear()
        _events.clear()
        flags = _CHARS_UTF8
        if prosody is not None:
            text, flags = ssml(text, *prosody[index]), _CHARS_UTF8 | _SSML
        encoded = text.encode("utf-8")
        status = library.espeak_Synth(encoded, len(encoded) + 1, 0, _POS_CHARACTER, 0, flags, None, None)
        library.espeak_Synchronize()
        if status != 0 or not _chunks:
            raise EspeakError(f"espeak-ng voice {voice!r} produced no audio for {text!r} (status {status})")
        wave = np.concatenate(_chunks).astype(np.float32) / 32768.0
        results.append((wave, list(_events)))
    return _sample_rate, results
