"""Build a multi-speaker English speech corpus with 10 ms phone labels from text-to-speech.

What is built (``build_corpus(out, hours)``, CLI ``cpc data synth --out DIR --hours H``)
-------------------------------------------------------------------------------------
* LibriSpeech layout ``DIR/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac`` (16 kHz mono
  FLAC) with ``<speaker>-<chapter>.trans.txt`` transcripts, and next to it the files that
  :func:`cpc.speech.corpus.formats.load_corpus` reads: ``alignments.txt``, ``phones.txt``, the split
  files, ``speakers.tsv``, ``abx/test.item`` and ``summary.json`` (counts, engine versions, variation).

Design decisions
----------------
* Engines report their own phone timings, so labels need no aligner: Festival (``kal``, ``ked``
  diphone voices, ``slt`` HTS voice) writes segment end times; espeak-ng (12 accent/variant
  voices) reports phoneme events. Symbols map to the 40-class inventory of
  :mod:`cpc.speech.corpus.phones`; an unmapped symbol stops the build.
* Speakers: 15 base voices × (speed, pitch) variants. ``speed`` is a resampling factor (the
  wave is read as if recorded at ``rate × speed`` and resampled to 16 kHz, which moves tempo,
  pitch and formants together, like a different vocal tract); ``pitch`` scales the engine's F0
  setting. Neighbouring variants (speed 0.96 vs 1.00) are close on purpose, so speaker
  classification is a real task. A synthetic voice never varies, so each utterance also gets
  its own speed (± 3 %) and pitch (± 6 %) drawn around its speaker's values: without this a
  linear probe on utterance-mean log-mel told 52 speakers apart at 99.7 %. The build uses ``max(6, round(12 × hours))`` speakers, about
  5 minutes each: variants are dealt round-robin over a seeded order of the base voices.
* Splits: the last base voices of that order (about 12 %, at least one) are held out entirely
  and form ``test_unseen_speakers_split.txt`` (generalisation to voices never trained on). The
  other speakers' utterances are split ~90/10 per speaker into ``train_split.txt`` and
  ``test_split.txt`` (utterance-disjoint, every test speaker has training data).
* Text: King James Bible verses (Debian ``bible-kjv``, public domain) of 6–22 words with plain
  punctuation, shuffled by the seed and dealt out so that no two utterances share a sentence.
* Frame labels: frame k (160 samples) takes the phone covering (k + 0.5) × 10 ms;
  ``len(wav) // 160`` frames; time after the last phone is ``sil``.
* Determinism: everything random comes from ``numpy.random.default_rng(seed)`` in the parent;
  each chapter (≤ 20 utterances of one speaker) is synthesised in a fresh worker process
  (``Pool(maxtasksperchild=1)``) because espeak-ng keeps global state, and results are
  collected in task order. Same arguments + same package versions → byte-identical files.
* Variation (:mod:`cpc.speech.corpus.variation`, on by default, each part switched off by a
  :class:`~cpc.speech.corpus.variation.Variation` field or ``--no-prosody`` / ``--no-reverb`` /
  ``--no-noise``): per-word and per-phrase duration and pitch inside each utterance (applied
  by the engines, so the timings stay theirs), then a simulated room (pyroomacoustics, direct
  path at sample 0, so labels do not move) and coloured noise at an SNR drawn from a range.
  :data:`~cpc.speech.corpus.variation.CLEAN` (``--clean``) builds what earlier releases built: the
  same audio, transcripts, splits and items; ``summary.json`` also records the variation, and
  ``alignments.txt`` labels ``sil`` the first frames (up to 40 ms) before espeak-ng's first
  phoneme event, which earlier releases gave to the first phone. Without an importable
  pyroomacoustics the build warns once and goes on without the room.
* Levels: each utterance is scaled to an RMS of 0.05 (peak ≤ 0.99) so loudness is no speaker cue.
* Reruns: ``summary.json`` is written last, so a folder of this layout without it is an unfinished
  (interrupted) build: it is deleted and built again, with a warning. A finished corpus is only
  replaced with ``overwrite=True`` (``--overwrite``); a folder holding anything else is never deleted.
  Worker processes leave quietly on Ctrl-C; the parent raises ``KeyboardInterrupt`` naming the folder.
"""

from __future__ import annotations

import io
import json
import logging
import math
import multiprocessing
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from cpc.bible import bible_lines
from cpc.errors import MissingToolError
from cpc.safe_io import write_atomic
from cpc.speech.audio import SAMPLE_RATE, resample
from cpc.speech.corpus import espeak, festival
from cpc.speech.corpus import variation as variation_module
from cpc.speech.corpus.formats import (
    ABX_ITEM_FILE,
    ALIGNMENTS_FILE,
    FRAME_SAMPLES,
    PHONES_FILE,
    SPEAKERS_FILE,
    SPLIT_FILES,
    ItemRow,
    SpeakerRow,
    write_alignments,
    write_item,
    write_phones,
    write_speakers,
    write_split,
)
from cpc.speech.corpus.phones import ESPEAK_CONTINUATION, PHONE_TO_ID, PHONES, SILENCE, map_phone
from cpc.speech.corpus.variation import Variation

__all__ = ["APT_INSTALL", "BaseVoice", "BASE_VOICES", "Variation", "build_corpus", "check_tools"]

log = logging.getLogger(__name__)

APT_INSTALL = "apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng bible-kjv"

SPEAKERS_PER_HOUR = 12
MIN_SPEAKERS = 6
MIN_UTTERANCES_PER_SPEAKER = 4
UTTERANCES_PER_CHAPTER = 20
HELD_OUT_VOICE_FRACTION = 0.12
TEST_FRACTION = 0.1
TARGET_RMS = 0.05
# Duration model used only to deal out sentences: seconds ≈ SECONDS_PER_WORD × words / speed
# + SECONDS_PER_UTTERANCE (fitted on a build; the summary reports the real duration).
SECONDS_PER_WORD = 0.276
SECONDS_PER_UTTERANCE = 0.52
MIN_WORDS, MAX_WORDS = 6, 22
SPEED_JITTER = 0.03  # per-utterance speed and pitch: uniform within ± this fraction of the speaker's
PITCH_JITTER = 0.06
VARIATION_STREAM = (
    13  # the utterances' variation seeds come from default_rng([seed, 13]), not from the plan's generator
)


@dataclass(frozen=True)
class BaseVoice:
    engine: str  # "festival" | "espeak-ng"
    voice: str  # festival.VOICES key or an espeak-ng voice name
    has_pitch: bool = True


BASE_VOICES: tuple[BaseVoice, ...] = (
    BaseVoice("festival", "kal"),
    BaseVoice("festival", "ked"),
    BaseVoice("festival", "slt", has_pitch=False),
    *(
        BaseVoice("espeak-ng", name)
        for name in (
            "en-us+m1", "en-us+m3", "en-us+f1", "en-us+f3", "en-us-nyc+m2", "en+m2", "en+f2",
            "en-gb-x-rp+m4", "en-gb-x-rp+f4", "en-029+m5", "en-gb-scotland+m6", "en-gb-scotland+f5",
        )
    ),
)  # fmt: skip

_SPEEDS = (0.88, 0.92, 0.96, 1.0, 1.04, 1.08, 1.12)
_PITCHES = (0.9, 1.0, 1.1)
# Variants in the order they are handed out: the plain voice first, then spread over the grid.
_VARIANT_ORDER = [(1.0, 1.0), (0.92, 1.1), (1.08, 0.9), (0.96, 0.9), (1.04, 1.1), (0.88, 1.0), (1.12, 1.0)]
_VARIANT_ORDER += [(s, p) for p in _PITCHES for s in _SPEEDS if (s, p) not in _VARIANT_ORDER]
_SPEED_ONLY_ORDER = [1.0, 0.92, 1.08, 0.96, 1.04, 0.88, 1.12]


def _variants(voice: BaseVoice) -> list[tuple[float, float]]:
    return list(_VARIANT_ORDER) if voice.has_pitch else [(speed, 1.0) for speed in _SPEED_ONLY_ORDER]


# ----------------------------------------------------------------------------- tools and text
def check_tools() -> None:
    """Raise :class:`MissingToolError` (with the apt-get line) unless festival, espeak-ng and bible are here."""
    missing = [name for name in ("festival", "bible") if shutil.which(name) is None]
    try:
        espeak.load_library()
    except espeak.EspeakError:
        missing.append("libespeak-ng")
    if missing:
        raise MissingToolError(f"{', '.join(missing)} not found; install the engines and text with `{APT_INSTALL}`")


def _engine_versions() -> dict[str, str]:
    versions = {}
    for name, command in (("festival", ["festival", "--version"]), ("espeak-ng", ["espeak-ng", "--version"])):
        try:
            versions[name] = subprocess.run(command, capture_output=True, text=True).stdout.strip()
        except OSError:
            versions[name] = "unknown"
    return versions


def _pyroomacoustics_version(variation: Variation) -> str | None:
    return variation_module.import_pyroomacoustics().__version__ if variation.reverb else None


_PLAIN_VERSE = re.compile(r"^[A-Za-z ,.;:?!'-]+$")


def _normalise(text: str) -> str:
    # KJV writes LORD in capitals; some engines would spell an all-capital word letter by letter.
    return " ".join(word.capitalize() if len(word) > 1 and word.isupper() else word for word in text.split())


def read_verses() -> list[str]:
    """All KJV verses of 6–22 words with plain punctuation, in Bible order (about 14k)."""
    verses = []
    for line in bible_lines():
        text = line.split(" ", 1)[1].strip() if " " in line else ""
        if _PLAIN_VERSE.match(text) and MIN_WORDS <= len(text.split()) <= MAX_WORDS:
            verses.append(_normalise(text))
    return verses


# ----------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class _Chapter:
    """One worker task: utterances of one speaker, written under ``out/<speaker>/<chapter>/``."""

    out: str
    speaker: SpeakerRow
    chapter: str
    utterances: tuple[tuple[str, str, float, float, int], ...]  # (utterance id, text, speed, pitch, variation seed)
    variation: Variation = variation_module.CLEAN


def _plan_speakers(num_speakers: int, rng: np.random.Generator) -> list[SpeakerRow]:
    voices = [BASE_VOICES[index] for index in rng.permutation(len(BASE_VOICES))]
    capacity = sum(len(_variants(voice)) for voice in voices)
    if num_speakers > capacity:
        raise ValueError(f"{num_speakers} speakers asked for, but only {capacity} voice variants exist")
    chosen: list[tuple[BaseVoice, float, float]] = []
    round_index = 0
    while len(chosen) < num_speakers:
        for voice in voices:
            variants = _variants(voice)
            if round_index < len(variants) and len(chosen) < num_speakers:
                chosen.append((voice, *variants[round_index]))
        round_index += 1
    used = list(dict.fromkeys(voice for voice, _, _ in chosen))  # in order of first use
    num_held_out = max(1, round(HELD_OUT_VOICE_FRACTION * len(used))) if len(used) >= 2 else 0
    held_out = set(used[len(used) - num_held_out :])
    return [
        SpeakerRow(str(100 + index), voice.voice, voice.engine, speed, pitch, voice in held_out)
        for index, (voice, speed, pitch) in enumerate(chosen)
    ]


def _has_pitch(speaker: SpeakerRow) -> bool:
    return next(v.has_pitch for v in BASE_VOICES if (v.engine, v.voice) == (speaker.engine, speaker.voice))


def _estimated_seconds(text: str, speed: float) -> float:
    return SECONDS_PER_WORD * len(text.split()) / speed + SECONDS_PER_UTTERANCE


def _plan_chapters(
    out: Path,
    speakers: list[SpeakerRow],
    verses: list[str],
    hours: float,
    rng: np.random.Generator,
    variation: Variation,
    variation_rng: np.random.Generator,
) -> list[_Chapter]:
    order = rng.permutation(len(verses))
    seconds_per_speaker = hours * 3600 / len(speakers)
    chapters: list[_Chapter] = []
    next_verse = 0
    for speaker in speakers:
        texts: list[str] = []
        seconds = 0.0
        while seconds < seconds_per_speaker or len(texts) < MIN_UTTERANCES_PER_SPEAKER:
            if next_verse == len(order):
                raise ValueError(
                    f"not enough distinct sentences for {hours} h: the {len(verses)} usable verses ran out"
                )
            texts.append(verses[order[next_verse]])
            next_verse += 1
            seconds += _estimated_seconds(texts[-1], speaker.speed)
        for start in range(0, len(texts), UTTERANCES_PER_CHAPTER):
            chapter = str(start // UTTERANCES_PER_CHAPTER + 1)
            batch = texts[start : start + UTTERANCES_PER_CHAPTER]
            utterances = []
            for index, text in enumerate(batch):
                speed = speaker.speed * (1 + SPEED_JITTER * rng.uniform(-1, 1))
                pitch = speaker.pitch * (1 + PITCH_JITTER * rng.uniform(-1, 1)) if _has_pitch(speaker) else 1.0
                variation_seed = int(variation_rng.integers(2**63))
                utterances.append(
                    (f"{speaker.speaker}-{chapter}-{index:04d}", text, round(speed, 4), round(pitch, 4), variation_seed)
                )
            chapters.append(_Chapter(str(out), speaker, chapter, tuple(utterances), variation))
    return chapters


# ----------------------------------------------------------------------------- synthesis (workers)
@dataclass
class _Utterance:
    utterance: str
    speaker: str
    num_samples: int
    labels: np.ndarray  # (T,) uint8 phone ids, T = num_samples // 160
    segments: list[tuple[float, float, str]]  # (start s, end s, phone) at 16 kHz output time


def _engine_segments(chapter: _Chapter) -> list[tuple[np.ndarray, int, list[tuple[float, float, str]]]]:
    """Synthesise a chapter; per utterance (wave, rate, [(start s, end s, mapped phone)]) at the engine's rate."""
    speaker = chapter.speaker
    texts = [text for _, text, _, _, _ in chapter.utterances]
    pitches = [pitch for _, _, _, pitch, _ in chapter.utterances]
    prosody = None
    if chapter.variation.prosody and _has_pitch(speaker):  # the HTS voice (slt) makes its own durations and F0
        prosody = [
            variation_module.word_factors(text, variation_module.streams(seed)[0])
            for _, text, _, _, seed in chapter.utterances
        ]
    results = []
    if speaker.engine == "festival":
        synthesised = festival.synthesize(speaker.voice, texts, pitches=pitches, prosody=prosody)
        for (utterance, *_), (wave, rate, rows) in zip(chapter.utterances, synthesised):
            segments, start = [], 0.0
            for end, symbol in rows:
                if end > start:
                    segments.append((start, end, map_phone(symbol, "festival", context=f"utterance {utterance}")))
                start = max(start, end)
            results.append((wave, rate, segments))
    else:
        rate, outputs = espeak.synthesize(speaker.voice, texts, pitches=pitches, prosody=prosody)
        for (utterance, *_), (wave, events) in zip(chapter.utterances, outputs):
            starts: list[tuple[int, str]] = []
            for sample, symbol in events:
                if symbol in ESPEAK_CONTINUATION:
                    continue
                phone = map_phone(symbol, "espeak-ng", context=f"utterance {utterance}, voice {speaker.voice}")
                if starts and starts[-1][0] == sample:  # a zero-length event: the later one wins
                    starts[-1] = (sample, phone)
                else:
                    starts.append((sample, phone))
            if starts and starts[0][0] > 0:  # the first phone can start a few ms into the wave: silence before it
                starts.insert(0, (0, SILENCE))
            bounds = [sample for sample, _ in starts] + [len(wave)]
            segments = [
                (bounds[i] / rate, bounds[i + 1] / rate, phone)
                for i, (_, phone) in enumerate(starts)
                if bounds[i + 1] > bounds[i]
            ]
            results.append((wave, rate, segments))
    return results


def _merge(segments: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    merged: list[tuple[float, float, str]] = []
    for start, end, phone in segments:
        if merged and merged[-1][2] == phone:
            merged[-1] = (merged[-1][0], end, phone)
        else:
            merged.append((start, end, phone))
    return merged


def frame_labels(segments: list[tuple[float, float, str]], num_samples: int) -> np.ndarray:
    """Phone ids (uint8, shape (num_samples // 160,)): frame k takes the phone covering (k + 0.5) × 10 ms."""
    centres = (np.arange(num_samples // FRAME_SAMPLES) + 0.5) * FRAME_SAMPLES / SAMPLE_RATE
    ends = np.array([end for _, end, _ in segments])
    ids = np.array([PHONE_TO_ID[phone] for _, _, phone in segments] + [PHONE_TO_ID[SILENCE]], dtype=np.uint8)
    return ids[np.searchsorted(ends, centres, side="right")]


def _transcript(text: str) -> str:
    return " ".join(re.sub(r"[^A-Za-z' ]", " ", text).upper().split())


def _synthesize_chapter(chapter: _Chapter) -> list[_Utterance]:
    speaker = chapter.speaker
    folder = Path(chapter.out) / speaker.speaker / chapter.chapter
    folder.mkdir(parents=True, exist_ok=True)
    utterances = []
    variation = chapter.variation
    for (utterance, _, speed, _, seed), (wave, rate, segments) in zip(chapter.utterances, _engine_segments(chapter)):
        # Speed perturbation: treat the wave as recorded at rate × speed, then resample to 16 kHz.
        effective_rate = int(round(rate * speed))
        wave = resample(wave.astype(np.float32), effective_rate, SAMPLE_RATE, backend="librosa")
        time_scale = rate / effective_rate
        segments = _merge([(start * time_scale, end * time_scale, phone) for start, end, phone in segments])
        if variation.reverb or variation.noise:  # same length, direct path at sample 0: the segments stay
            wave = variation_module.apply_channel(wave, variation, seed, SAMPLE_RATE)
        rms = float(np.sqrt(np.mean(np.square(wave, dtype=np.float64))))
        peak = float(np.abs(wave).max())
        if rms == 0.0:
            raise RuntimeError(f"{speaker.engine} voice {speaker.voice} produced silence for utterance {utterance}")
        wave = wave * min(TARGET_RMS / rms, 0.99 / peak)
        encoded = io.BytesIO()
        sf.write(encoded, wave, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        write_atomic(folder / f"{utterance}.flac", encoded.getvalue())
        utterances.append(
            _Utterance(utterance, speaker.speaker, len(wave), frame_labels(segments, len(wave)), segments)
        )
    lines = [f"{utterance} {_transcript(text)}\n" for utterance, text, *_ in chapter.utterances]
    write_atomic(folder / f"{speaker.speaker}-{chapter.chapter}.trans.txt", "".join(lines))
    return utterances


# ----------------------------------------------------------------------------- the output folder
SUMMARY_FILE = "summary.json"
_TOP_LEVEL_FILES = {ALIGNMENTS_FILE, PHONES_FILE, SPEAKERS_FILE, SUMMARY_FILE, *SPLIT_FILES.values()}
_ABX_FOLDER, _ABX_NAME = ABX_ITEM_FILE.split("/")


def _foreign_entry(out: Path) -> Path | None:
    """The first file or folder under ``out`` that a build of this module would not have written, if any."""
    for entry in out.iterdir():
        if entry.is_file() and entry.name in _TOP_LEVEL_FILES:
            continue
        if entry.is_dir() and entry.name == _ABX_FOLDER:
            stray = [item for item in entry.iterdir() if item.name != _ABX_NAME]
            if stray:
                return stray[0]
            continue
        if not (entry.is_dir() and not entry.is_symlink() and entry.name.isdigit()):
            return entry
        for chapter in entry.iterdir():  # <speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac and .trans.txt
            if not (chapter.is_dir() and not chapter.is_symlink() and chapter.name.isdigit()):
                return chapter
            prefix = f"{entry.name}-{chapter.name}"
            for file in chapter.iterdir():
                if not (file.is_file() and re.fullmatch(rf"{prefix}(-\d{{4}}\.flac|\.trans\.txt)", file.name)):
                    return file
    return None


def _check_output_folder(out: Path, overwrite: bool) -> str | None:
    """None for an absent or empty folder, else "finished" or "unfinished" (a build of ours); raise for anything else."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise ValueError(f"output folder {out} is a file, not a folder")
    if not any(out.iterdir()):
        return None
    foreign = _foreign_entry(out)
    if foreign is not None:
        raise ValueError(
            f"output folder {out} is not empty and is not a corpus built by `cpc data synth` "
            f"({foreign.relative_to(out)} is none of its files); remove it or choose another folder"
        )
    if not (out / SUMMARY_FILE).is_file():
        return "unfinished"
    if not overwrite:
        try:
            summary = json.loads((out / SUMMARY_FILE).read_text())
            what = f"{summary['hours']} h, {summary['num_utterances']} utterances, seed {summary['seed']}"
        except (OSError, ValueError, KeyError, TypeError):
            what = f"it has a {SUMMARY_FILE}"
        raise ValueError(
            f"output folder {out} already holds a finished corpus ({what}); pass --overwrite to build it again, or choose another folder"
        )
    return "finished"


def _empty_folder(out: Path) -> None:
    for entry in out.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _quiet_worker() -> None:
    """Pool initializer: on Ctrl-C, or the pool's terminate(), a worker exits without a traceback
    (the parent reports the interrupt once), still stopping its engine process and removing its
    temporary files."""
    for name in (signal.SIGINT, signal.SIGTERM):
        signal.signal(name, lambda *_: sys.exit(1))


# ----------------------------------------------------------------------------- the build
def _abx_items(utterances: list[_Utterance]) -> list[ItemRow]:
    rows = []
    for utterance in utterances:
        segments = utterance.segments
        for index, (start, end, phone) in enumerate(segments):
            if phone == SILENCE or end - start < 0.0001:
                continue
            previous = segments[index - 1][2] if index > 0 else SILENCE
            following = segments[index + 1][2] if index + 1 < len(segments) else SILENCE
            rows.append(ItemRow(utterance.utterance, start, end, phone, previous, following, utterance.speaker))
    return rows


ALL_VARIATION = Variation()  # prosody, room and noise in their default ranges (frozen: one shared default is safe)


def build_corpus(
    out: str | Path,
    hours: float,
    seed: int = 0,
    workers: int = 2,
    overwrite: bool = False,
    *,
    variation: Variation = ALL_VARIATION,
) -> dict:
    """Synthesise about ``hours`` of speech into ``out``; return a summary dict.

    ``variation`` says which of prosody, room and noise to add and in what ranges (default: all;
    :data:`cpc.speech.corpus.variation.CLEAN` for none).

    ``out`` must be absent, empty, or an unfinished build (rebuilt from scratch, with a warning);
    a finished corpus there is replaced only with ``overwrite=True``. The summary (also written,
    last, to ``out/summary.json``) holds the real duration, the speaker, utterance and split
    counts, the frames per phone, the variation and the engine versions.
    """
    out = Path(out)
    if not math.isfinite(hours) or hours <= 0:
        raise ValueError(f"hours must be a positive number, got {hours}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    existing = _check_output_folder(out, overwrite)
    check_tools()
    if variation.reverb:
        try:
            variation_module.import_pyroomacoustics()
        except ImportError as error:
            log.warning("%s; building without reverberation", error)
            variation = replace(variation, reverb=False)
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    num_speakers = max(MIN_SPEAKERS, round(SPEAKERS_PER_HOUR * hours))
    speakers = _plan_speakers(num_speakers, rng)
    chapters = _plan_chapters(
        out, speakers, read_verses(), hours, rng, variation, np.random.default_rng([seed, VARIATION_STREAM])
    )
    total = sum(len(chapter.utterances) for chapter in chapters)
    if existing == "unfinished":
        log.warning(
            "%s holds an unfinished build (no %s: interrupted?); deleting it and building again", out, SUMMARY_FILE
        )
        _empty_folder(out)
    elif existing == "finished":
        log.warning("overwrite: deleting the corpus in %s and building again", out)
        _empty_folder(out)
    log.info(
        "synthesising %d utterances (%d speakers, %d chapters) into %s with %d workers",
        total,
        len(speakers),
        len(chapters),
        out,
        workers,
    )
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _build(out, hours, seed, workers, speakers, chapters, rng, started, variation)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(
            f"interrupted: {out} holds an unfinished build (no {SUMMARY_FILE}); run the same command again to rebuild it"
        ) from None


def _build(
    out: Path,
    hours: float,
    seed: int,
    workers: int,
    speakers: list[SpeakerRow],
    chapters: list[_Chapter],
    rng: np.random.Generator,
    started: float,
    variation: Variation,
) -> dict:
    """Synthesise the planned chapters and write every corpus file, ``summary.json`` last."""
    utterances = _synthesize_chapters(chapters, workers, started)
    splits = _split_by_speaker(utterances, speakers, rng)
    _write_labels(out, utterances, splits, speakers)
    summary = _summary(hours, seed, utterances, speakers, splits, variation)
    write_atomic(
        out / SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=True) + "\n"
    )  # last: marks the build finished
    log.info(
        "built %.3f h (%d utterances, %d speakers) in %s in %.1f s",
        summary["hours"],
        len(utterances),
        len(speakers),
        out,
        time.perf_counter() - started,
    )
    return summary


def _synthesize_chapters(chapters: list[_Chapter], workers: int, started: float) -> list[_Utterance]:
    """Every chapter's utterances, synthesised by ``workers`` processes, in chapter order."""
    # Import librosa/soxr once here: forked workers then inherit it instead of paying ~1 s each.
    resample(np.zeros(4096, dtype=np.float32), 22050, SAMPLE_RATE, backend="librosa")
    utterances: list[_Utterance] = []
    context = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
    with (context or multiprocessing).Pool(workers, initializer=_quiet_worker, maxtasksperchild=1) as pool:
        for done, batch in enumerate(pool.imap(_synthesize_chapter, chapters), start=1):
            utterances.extend(batch)
            if done % max(1, len(chapters) // 10) == 0 or done == len(chapters):
                log.info(
                    "  %d/%d chapters, %d utterances, %.0f s",
                    done,
                    len(chapters),
                    len(utterances),
                    time.perf_counter() - started,
                )
    return utterances


def _split_by_speaker(
    utterances: list[_Utterance], speakers: list[SpeakerRow], rng: np.random.Generator
) -> dict[str, list[str]]:
    """Train / test / test_unseen_speakers utterance ids: the held-out speakers' all go to the last; of every other
    speaker's, a shuffled TEST_FRACTION to test and the rest to train (same speakers in both)."""
    held_out = {row.speaker for row in speakers if row.held_out}
    splits: dict[str, list[str]] = {"train": [], "test": [], "test_unseen_speakers": []}
    by_speaker: dict[str, list[str]] = {}
    for utterance in utterances:
        by_speaker.setdefault(utterance.speaker, []).append(utterance.utterance)
    for speaker in sorted(by_speaker):
        ids = sorted(by_speaker[speaker])
        if speaker in held_out:
            splits["test_unseen_speakers"] += ids
            continue
        shuffled = [ids[index] for index in rng.permutation(len(ids))]
        num_test = max(1, round(TEST_FRACTION * len(ids)))
        splits["test"] += shuffled[:num_test]
        splits["train"] += shuffled[num_test:]
    return splits


def _write_labels(
    out: Path, utterances: list[_Utterance], splits: dict[str, list[str]], speakers: list[SpeakerRow]
) -> None:
    """The files beside the audio: alignments, phone inventory, splits, speakers and the ABX items of the test split."""
    write_alignments(out / ALIGNMENTS_FILE, {u.utterance: u.labels for u in utterances})
    write_phones(out / PHONES_FILE, PHONES)
    for name, file_name in SPLIT_FILES.items():
        write_split(out / file_name, splits[name])
    write_speakers(out / SPEAKERS_FILE, speakers)
    test_ids = set(splits["test"])
    write_item(out / ABX_ITEM_FILE, _abx_items([u for u in utterances if u.utterance in test_ids]))


def _summary(
    hours: float,
    seed: int,
    utterances: list[_Utterance],
    speakers: list[SpeakerRow],
    splits: dict[str, list[str]],
    variation: Variation,
) -> dict:
    """summary.json: duration, counts, frames per phone, engine versions and the variation used."""
    frame_counts = Counter()
    for utterance in utterances:
        frame_counts.update(utterance.labels.tolist())
    num_samples = sum(u.num_samples for u in utterances)
    return {
        "hours_requested": hours,
        "hours": round(num_samples / SAMPLE_RATE / 3600, 4),
        "seed": seed,
        "num_utterances": len(utterances),
        "num_speakers": len(speakers),
        "num_held_out_speakers": len({row.speaker for row in speakers if row.held_out}),
        "num_base_voices": len({(row.engine, row.voice) for row in speakers}),
        "split_sizes": {name: len(ids) for name, ids in splits.items()},
        "frames_per_phone": {PHONES[index]: frame_counts.get(index, 0) for index in range(len(PHONES))},
        "engine_versions": _engine_versions(),
        "variation": {**asdict(variation), "pyroomacoustics": _pyroomacoustics_version(variation)},
    }
