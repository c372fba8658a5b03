"""What makes the synthetic corpus less clean than its voices: prosody inside each utterance, a room, noise.

A synthetic voice says the same phone in the same context almost identically, so without this
within-speaker MFCC ABX on the built corpus was about 1 %. :class:`Variation` holds the options
(``cpc data synth --no-prosody --no-reverb --no-noise --snr-db LOW HIGH --rt60 LOW HIGH``);
:data:`CLEAN` switches everything off and builds the corpus of earlier releases.

Design decisions
----------------
* Prosody (per word, times per phrase): each word gets a duration stretch and a pitch factor,
  log-normal around 1, the product of a phrase factor (phrases end at ``, ; : . ? !``) and a
  word factor. The engines apply them, so the phone timings they report stay exact: Festival's
  diphone voices stretch each segment of the word after the ``Duration`` module and scale the
  word's F0 targets after ``Int_Targets``; espeak-ng reads SSML ``<prosody rate pitch>`` around
  each word. The HTS voice (Festival ``slt``) predicts its own durations and F0, so it varies
  only from utterance to utterance and in the channel.
* Room: a shoebox room from :mod:`pyroomacoustics` (image source method) per utterance, of
  random size (3–10 × 3–8 × 2.4–4 m) and reverberation time (``rt60`` range; the wall absorption
  follows from Sabine's formula), with the source and the microphone 0.5–3 m apart. The impulse
  response is cut so that its direct path is at sample 0: the reverberant wave is the dry wave
  plus later reflections, and every phone label keeps its time (tested: the cross-correlation
  of dry and reverberant speech peaks at lag 0). The output keeps the dry length (the tail after
  the final silence is dropped).
* Noise: stationary Gaussian noise made here (no recordings), with a power spectrum
  ∝ f^(-β) for β drawn in [0, 2] (white, pink, brown and between), nothing below 50 Hz,
  added at an SNR drawn uniformly in the ``snr_db`` range. The SNR is the power of the
  (reverberant) speech over the whole utterance, pauses included, over the noise power.
* Random numbers: each utterance has its own seed (drawn by the builder from a generator of its
  own, so the clean build's plan is unchanged); prosody, room and noise use three independent
  streams of it, so switching one off leaves the others as they were.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Variation",
    "CLEAN",
    "streams",
    "word_factors",
    "room_impulse_response",
    "reverberate",
    "coloured_noise",
    "add_noise",
    "apply_channel",
    "import_pyroomacoustics",
]

PIP_INSTALL = "pip install pyroomacoustics"

# Log-normal spreads (standard deviation of the natural log of the factor).
PHRASE_DURATION_SPREAD = 0.12
WORD_DURATION_SPREAD = 0.15
PHRASE_PITCH_SPREAD = 0.08
WORD_PITCH_SPREAD = 0.08
FACTOR_RANGE = (0.6, 1.6)  # clip: engines stay intelligible

ROOM_SIZE_RANGE = ((3.0, 3.0, 2.4), (10.0, 8.0, 4.0))  # metres, (length, width, height)
WALL_MARGIN = 0.5  # metres between a wall and the source or the microphone
DISTANCE_RANGE = (0.5, 3.0)  # metres from source to microphone
MAX_IMAGE_ORDER = (
    25  # reflections: bounds the time of a small, very reverberant room (its RT60 comes out shorter, ~0.6 s at most)
)
NOISE_EXPONENT_RANGE = (0.0, 2.0)  # β of a 1/f^β power spectrum
NOISE_HIGHPASS_HZ = 50.0
MIN_RT60 = 0.2  # Sabine's absorption exceeds 1 below ~0.17 s in the largest room


@dataclass(frozen=True)
class Variation:
    """Options of :func:`cpc.speech.corpus.synth.build_corpus` beyond the voices; every field on by default.

    ``snr_db``: the range (dB) each utterance's SNR is drawn from, uniformly; ``rt60``: the range
    (seconds) of reverberation times. Equal ends fix the value.
    """

    prosody: bool = True
    reverb: bool = True
    noise: bool = True
    snr_db: tuple[float, float] = (10.0, 30.0)
    rt60: tuple[float, float] = (0.2, 0.7)

    def __post_init__(self):
        for name in ("snr_db", "rt60"):
            value = tuple(float(x) for x in getattr(self, name))
            if len(value) != 2:
                raise ValueError(f"{name} must be a range of two numbers LOW HIGH, got {value}")
            object.__setattr__(self, name, value)
        low, high = self.snr_db
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise ValueError(f"snr_db must be two finite numbers LOW <= HIGH (dB), got {self.snr_db}")
        low, high = self.rt60
        if not MIN_RT60 <= low <= high <= 2.0:
            raise ValueError(f"rt60 must be two numbers {MIN_RT60} <= LOW <= HIGH <= 2 (seconds), got {self.rt60}")


CLEAN = Variation(prosody=False, reverb=False, noise=False)


def streams(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Three independent generators (prosody, room, noise) from one utterance's seed."""
    return tuple(np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(3))


# ----------------------------------------------------------------------------- prosody
_PHRASE_END = re.compile(r"[,;:.?!]$")


def word_factors(text: str, rng: np.random.Generator) -> tuple[list[float], list[float]]:
    """Per whitespace-separated word of ``text``: (duration stretches, pitch factors), > 1 = slower / higher."""
    words = text.split()
    stretches, pitches = [], []
    phrase_stretch = phrase_pitch = None
    for word in words:
        if phrase_stretch is None:
            phrase_stretch = rng.normal(0.0, PHRASE_DURATION_SPREAD)
            phrase_pitch = rng.normal(0.0, PHRASE_PITCH_SPREAD)
        stretches.append(float(np.clip(np.exp(phrase_stretch + rng.normal(0.0, WORD_DURATION_SPREAD)), *FACTOR_RANGE)))
        pitches.append(float(np.clip(np.exp(phrase_pitch + rng.normal(0.0, WORD_PITCH_SPREAD)), *FACTOR_RANGE)))
        if _PHRASE_END.search(word):
            phrase_stretch = None
    return [round(x, 4) for x in stretches], [round(x, 4) for x in pitches]


# ----------------------------------------------------------------------------- room
def import_pyroomacoustics():
    """The module, or raise ImportError (any failure to import it) naming the pip line."""
    try:
        import pyroomacoustics
    except Exception as error:  # a broken install raises more than ImportError
        raise ImportError(
            f"pyroomacoustics does not import ({type(error).__name__}: {error}); `{PIP_INSTALL}`"
        ) from None
    return pyroomacoustics


def room_impulse_response(rng: np.random.Generator, rt60_range: tuple[float, float], sample_rate: int) -> np.ndarray:
    """A random shoebox room's impulse response (float64), cut so that its direct path is at sample 0."""
    pra = import_pyroomacoustics()
    low, high = (np.array(bound) for bound in ROOM_SIZE_RANGE)
    size = rng.uniform(low, high)
    rt60 = rng.uniform(*rt60_range)
    absorption, max_order = pra.inverse_sabine(rt60, size)
    while True:  # source and microphone DISTANCE_RANGE apart (rejection: a few draws at most)
        source, microphone = rng.uniform(WALL_MARGIN, size - WALL_MARGIN, size=(2, 3))
        distance = float(np.linalg.norm(source - microphone))
        if DISTANCE_RANGE[0] <= distance <= DISTANCE_RANGE[1]:
            break
    room = pra.ShoeBox(
        size,
        fs=sample_rate,
        materials=pra.Material(absorption),
        max_order=min(max_order, MAX_IMAGE_ORDER),
        air_absorption=False,
        use_rand_ism=False,
    )
    room.add_source(source)
    room.add_microphone(microphone)
    room.compute_rir()
    response = np.asarray(room.rir[0][0], dtype=np.float64)
    # pyroomacoustics delays every path by half its fractional-delay filter; the direct path
    # arrives after distance / c more.
    direct = pra.constants.get("frac_delay_length") // 2 + distance / room.c * sample_rate
    return response[int(round(direct)) :]


def reverberate(wave: np.ndarray, response: np.ndarray) -> np.ndarray:
    """``wave`` convolved with ``response`` (direct path at 0), cut to the length of ``wave``."""
    from scipy.signal import fftconvolve

    return fftconvolve(wave.astype(np.float64), response)[: len(wave)]


# ----------------------------------------------------------------------------- noise
def coloured_noise(num_samples: int, exponent: float, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """Gaussian noise with power spectrum ∝ f^(-exponent) above 50 Hz and none below (float64)."""
    from scipy.fft import irfft, next_fast_len, rfft, rfftfreq

    length = next_fast_len(num_samples, real=True)  # a length with large prime factors made the FFTs 20x slower
    spectrum = rfft(rng.standard_normal(length))
    frequencies = rfftfreq(length, 1.0 / sample_rate)
    gain = np.zeros_like(frequencies)
    above = frequencies >= NOISE_HIGHPASS_HZ
    gain[above] = frequencies[above] ** (-exponent / 2)
    return irfft(spectrum * gain, length)[:num_samples]


def add_noise(wave: np.ndarray, snr_db: float, rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """``wave`` plus coloured noise (β drawn from ``rng``) at ``snr_db`` (speech power over the whole wave)."""
    noise = coloured_noise(len(wave), rng.uniform(*NOISE_EXPONENT_RANGE), rng, sample_rate)
    speech_power = float(np.mean(np.square(wave, dtype=np.float64)))
    noise = noise * math.sqrt(speech_power / 10 ** (snr_db / 10) / float(np.mean(np.square(noise))))
    return wave + noise


def apply_channel(wave: np.ndarray, variation: Variation, seed: int, sample_rate: int) -> np.ndarray:
    """The room then the noise of ``variation`` on one utterance's dry wave (same length, float64)."""
    _, room_rng, noise_rng = streams(seed)
    wave = wave.astype(np.float64)
    if variation.reverb:
        wave = reverberate(wave, room_impulse_response(room_rng, variation.rt60, sample_rate))
    if variation.noise:
        wave = add_noise(wave, noise_rng.uniform(*variation.snr_db), noise_rng, sample_rate)
    return wave
