"""Corpus file formats, and ONE loader for both the built corpus and a real LibriSpeech folder.

Formats (all plain text, UTF-8, one record per line)
----------------------------------------------------
* alignments (the CPC paper's ``converted_aligned_phones.txt``): ``<utt-id> <id> <id> ...``,
  one integer phone id per 10 ms frame (160 samples at 16 kHz); the built corpus writes
  ``len(wav) // 160`` ids, frame k labelled by the phone covering time (k + 0.5) × 10 ms.
* ``phones.txt``: ``<id> <name>`` per line, ids 0..C-1 in order.
* split files (``train_split.txt``, ...): one utterance id per line (read with
  :func:`cpc.speech.audio.read_split`).
* ``speakers.tsv``: a header row then ``speaker voice engine speed pitch held_out``.
* ZeroSpeech / libri-light ABX ``.item``: a header ``#file onset offset #phone prev-phone
  next-phone speaker`` then one token per line; onset/offset (seconds) bound the central phone.

The loader
----------
:func:`load_corpus` lists the audio under ``root`` (LibriSpeech layout: the speaker is the top
folder) and reads the label and split files; every id named in an alignment or a split must
have an audio file, else a ``ValueError`` lists the missing ids. The CPC LibriSpeech-100
release has no phones file: its classes are then named by their integer id, and there are
``max(41, largest id + 1)`` of them (41 in that release).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cpc.safe_io import write_atomic
from cpc.speech.audio import AudioFile, list_audio, read_split

__all__ = [
    "FRAME_SAMPLES",
    "CPC_LIBRISPEECH_CLASSES",
    "ALIGNMENTS_FILE",
    "PHONES_FILE",
    "SPLIT_FILES",
    "SPEAKERS_FILE",
    "ABX_ITEM_FILE",
    "ItemRow",
    "SpeakerRow",
    "Corpus",
    "read_alignments",
    "write_alignments",
    "read_phones",
    "write_phones",
    "write_split",
    "read_speakers",
    "write_speakers",
    "read_item",
    "write_item",
    "load_corpus",
]

FRAME_SAMPLES = 160  # 10 ms at 16 kHz
CPC_LIBRISPEECH_CLASSES = 41

# Names the builder writes inside its output folder; load_corpus defaults to them.
ALIGNMENTS_FILE = "alignments.txt"
PHONES_FILE = "phones.txt"
SPLIT_FILES = {
    "train": "train_split.txt",
    "test": "test_split.txt",
    "test_unseen_speakers": "test_unseen_speakers_split.txt",
}
SPEAKERS_FILE = "speakers.tsv"
ABX_ITEM_FILE = "abx/test.item"

ITEM_HEADER = "#file onset offset #phone prev-phone next-phone speaker"
SPEAKER_COLUMNS = ("speaker", "voice", "engine", "speed", "pitch", "held_out")


# ----------------------------------------------------------------------------- alignments
def read_alignments(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``<utt-id> <id> <id> ...`` lines → {utt_id: int64 array of shape (T,)}, T frames of 10 ms."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"alignment file {path} does not exist")
    labels: dict[str, np.ndarray] = {}
    with open(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if fields[0] in labels:
                raise ValueError(f"{path}:{line_number}: utterance {fields[0]!r} appears twice")
            try:
                labels[fields[0]] = np.array(fields[1:], dtype=np.int64)
            except ValueError:
                raise ValueError(
                    f"{path}:{line_number}: phone ids must be integers, got {' '.join(fields[1:6])} ..."
                ) from None
    return labels


def write_alignments(path: str | os.PathLike, labels: dict[str, np.ndarray]) -> None:
    """Write {utt_id: (T,) int array} as alignment lines, sorted by utterance id."""
    write_atomic(
        path,
        "".join(
            utterance + " " + " ".join(map(str, np.asarray(labels[utterance]).tolist())) + "\n"
            for utterance in sorted(labels)
        ),
    )


# ----------------------------------------------------------------------------- phones
def read_phones(path: str | os.PathLike) -> list[str]:
    """``<id> <name>`` lines → names in id order (ids must be 0..C-1)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"phone inventory file {path} does not exist")
    names: list[str] = []
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or fields[0] != str(len(names)):
            raise ValueError(f"{path}:{line_number}: expected '{len(names)} <phone>', got {line!r}")
        names.append(fields[1])
    return names


def write_phones(path: str | os.PathLike, names: list[str] | tuple[str, ...]) -> None:
    write_atomic(path, "".join(f"{index} {name}\n" for index, name in enumerate(names)))


# ----------------------------------------------------------------------------- splits
def write_split(path: str | os.PathLike, utterances: list[str]) -> None:
    """One utterance id per line, sorted (read back with :func:`cpc.speech.audio.read_split`)."""
    write_atomic(path, "".join(f"{utterance}\n" for utterance in sorted(utterances)))


# ----------------------------------------------------------------------------- speakers
@dataclass(frozen=True)
class SpeakerRow:
    """A built speaker: ``voice`` of ``engine`` played at ``speed`` (resampling factor; 1.1 = 10 %
    faster and higher) with the engine's pitch setting scaled by ``pitch`` (the speaker's centre:
    the builder varies each utterance around it); ``held_out`` speakers appear only in the
    speaker-disjoint test split."""

    speaker: str
    voice: str
    engine: str
    speed: float
    pitch: float
    held_out: bool


def write_speakers(path: str | os.PathLike, rows: list[SpeakerRow]) -> None:
    lines = ["\t".join(SPEAKER_COLUMNS)]
    for row in rows:
        lines.append(f"{row.speaker}\t{row.voice}\t{row.engine}\t{row.speed:.2f}\t{row.pitch:.2f}\t{int(row.held_out)}")
    write_atomic(path, "\n".join(lines) + "\n")


def read_speakers(path: str | os.PathLike) -> list[SpeakerRow]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"speaker table {path} does not exist")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t")
        if tuple(reader.fieldnames or ()) != SPEAKER_COLUMNS:
            raise ValueError(f"{path}: expected the header {' '.join(SPEAKER_COLUMNS)!r}, got {reader.fieldnames}")
        return [
            SpeakerRow(
                r["speaker"], r["voice"], r["engine"], float(r["speed"]), float(r["pitch"]), r["held_out"] == "1"
            )
            for r in reader
        ]


# ----------------------------------------------------------------------------- ABX items
@dataclass(frozen=True)
class ItemRow:
    """One ABX token: ``phone`` spans [onset, offset) seconds of ``file`` (an utterance id)."""

    file: str
    onset: float
    offset: float
    phone: str
    prev_phone: str
    next_phone: str
    speaker: str


def read_item(path: str | os.PathLike) -> list[ItemRow]:
    """Parse a ZeroSpeech / libri-light ``.item`` file (header line first, then 7 fields per line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"item file {path} does not exist")
    rows: list[ItemRow] = []
    with open(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields or (line_number == 1 and fields[0].startswith("#")):
                continue
            if len(fields) != 7:
                raise ValueError(
                    f"{path}:{line_number}: expected 7 fields ({ITEM_HEADER}), got {len(fields)}: {line.strip()!r}"
                )
            try:
                onset, offset = float(fields[1]), float(fields[2])
            except ValueError:
                raise ValueError(
                    f"{path}:{line_number}: onset/offset must be numbers, got {fields[1]!r} {fields[2]!r}"
                ) from None
            if not offset > onset:
                raise ValueError(f"{path}:{line_number}: offset {offset} is not after onset {onset}")
            rows.append(ItemRow(fields[0], onset, offset, fields[3], fields[4], fields[5], fields[6]))
    return rows


def write_item(path: str | os.PathLike, rows: list[ItemRow]) -> None:
    lines = [ITEM_HEADER]
    for r in rows:
        lines.append(f"{r.file} {r.onset:.4f} {r.offset:.4f} {r.phone} {r.prev_phone} {r.next_phone} {r.speaker}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- the loader
@dataclass
class Corpus:
    """Audio files, frame phone labels, splits and speakers of one corpus, keyed by utterance id.

    ``labels[u]`` is an int64 array of shape (T,) with one phone id (index into ``phone_names``)
    per 10 ms frame; ``splits`` maps a split name ("train", "test", "test_unseen_speakers") to
    its utterance ids.
    """

    root: Path
    files: dict[str, AudioFile]
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    phone_names: list[str] = field(default_factory=list)
    splits: dict[str, list[str]] = field(default_factory=dict)
    speakers: dict[str, str] = field(default_factory=dict)

    @property
    def num_phones(self) -> int:
        return len(self.phone_names)


def _check_present(ids, files: dict, what: Path) -> None:
    missing = sorted(set(ids) - files.keys())
    if missing:
        shown = ", ".join(missing[:10]) + (f" ... ({len(missing)} in all)" if len(missing) > 10 else "")
        raise ValueError(f"{what} names utterances with no audio file under the corpus root: {shown}")


def load_corpus(
    root: str | os.PathLike,
    *,
    alignments: str | os.PathLike | None = None,
    phones: str | os.PathLike | None = None,
    train_split: str | os.PathLike | None = None,
    test_split: str | os.PathLike | None = None,
    test_unseen_speakers_split: str | os.PathLike | None = None,
) -> Corpus:
    """Load a corpus folder (built by ``cpc data synth``, or LibriSpeech + the CPC alignments).

    Each file argument defaults to the builder's name inside ``root`` (``alignments.txt``,
    ``phones.txt``, ``train_split.txt``, ``test_split.txt``, ``test_unseen_speakers_split.txt``);
    a default that does not exist is skipped (no labels / no such split), a path given
    explicitly must exist. Example for LibriSpeech-100 with the CPC paper's labels::

        load_corpus("LibriSpeech/train-clean-100", alignments="converted_aligned_phones.txt",
                    train_split="train_split.txt", test_split="test_split.txt")

    Raises ``ValueError`` listing utterance ids that an alignment or split names but that have
    no audio file, and when a label id falls outside the phone inventory.
    """
    root = Path(root)
    files = {audio.utterance_id: audio for audio in list_audio(root).files}

    def resolve(given, default_name):
        if given is not None:
            return Path(given)
        default = root / default_name
        return default if default.is_file() else None

    corpus = Corpus(root=root, files=files, speakers={u: audio.speaker for u, audio in files.items()})
    alignment_path = resolve(alignments, ALIGNMENTS_FILE)
    if alignment_path is not None:
        corpus.labels = read_alignments(alignment_path)
        _check_present(corpus.labels, files, alignment_path)
    phones_path = resolve(phones, PHONES_FILE)
    if phones_path is not None:
        corpus.phone_names = read_phones(phones_path)
    elif corpus.labels:
        largest = max(int(ids.max()) for ids in corpus.labels.values() if ids.size)
        corpus.phone_names = [str(index) for index in range(max(CPC_LIBRISPEECH_CLASSES, largest + 1))]
    for utterance, ids in corpus.labels.items():
        if ids.size and (ids.min() < 0 or ids.max() >= corpus.num_phones):
            raise ValueError(
                f"{alignment_path}: utterance {utterance} has phone id {int(ids.min() if ids.min() < 0 else ids.max())} "
                f"outside the {corpus.num_phones}-phone inventory {phones_path}"
            )
    given = {"train": train_split, "test": test_split, "test_unseen_speakers": test_unseen_speakers_split}
    for name, file_name in SPLIT_FILES.items():
        split_path = resolve(given[name], file_name)
        if split_path is not None:
            corpus.splits[name] = read_split(split_path)
            _check_present(corpus.splits[name], files, split_path)
    return corpus
