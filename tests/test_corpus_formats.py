"""Corpus file formats and the one loader: round trips, the LibriSpeech + CPC-alignment layout,
the ZeroSpeech item parser, and the committed sample under data/sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from cpc.speech.corpus.formats import (
    CPC_LIBRISPEECH_CLASSES,
    FRAME_SAMPLES,
    ItemRow,
    SpeakerRow,
    load_corpus,
    read_alignments,
    read_item,
    read_phones,
    read_speakers,
    write_alignments,
    write_item,
    write_phones,
    write_speakers,
)
from cpc.speech.corpus.phones import PHONES

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def test_alignments_phones_speakers_items_round_trip(tmp_path):
    labels = {"b-1-0001": np.array([0, 3, 3, 39]), "a-1-0000": np.array([1, 2])}
    write_alignments(tmp_path / "a.txt", labels)
    assert (tmp_path / "a.txt").read_text().splitlines()[0] == "a-1-0000 1 2"
    back = read_alignments(tmp_path / "a.txt")
    assert back.keys() == labels.keys() and all(np.array_equal(back[k], labels[k]) for k in labels)

    write_phones(tmp_path / "phones.txt", PHONES)
    assert read_phones(tmp_path / "phones.txt") == list(PHONES)

    rows = [
        SpeakerRow("100", "kal", "festival", 0.92, 1.1, False),
        SpeakerRow("101", "en+f2", "espeak-ng", 1.0, 1.0, True),
    ]
    write_speakers(tmp_path / "speakers.tsv", rows)
    assert read_speakers(tmp_path / "speakers.tsv") == rows

    items = [ItemRow("a-1-0000", 0.125, 0.2, "ah", "sil", "b", "100")]
    write_item(tmp_path / "abx" / "x.item", items)
    assert read_item(tmp_path / "abx" / "x.item") == items


def test_read_item_parses_a_libri_light_style_file(tmp_path):
    (tmp_path / "dev-clean.item").write_text(
        "#file onset offset #phone prev-phone next-phone speaker\n"
        "6295-244435-0000 0.3425 0.4425 AH V L 6295\n"
        "6295-244435-0000 0.4425 0.5125 L AH IY 6295\n"
    )
    rows = read_item(tmp_path / "dev-clean.item")
    assert rows[1] == ItemRow("6295-244435-0000", 0.4425, 0.5125, "L", "AH", "IY", "6295")
    (tmp_path / "bad.item").write_text("#file onset offset #phone prev-phone next-phone speaker\nu 0.1 0.2 AH V\n")
    with pytest.raises(ValueError, match=r"bad.item:2: expected 7 fields"):
        read_item(tmp_path / "bad.item")


def test_bad_files_name_the_file_and_line(tmp_path):
    (tmp_path / "a.txt").write_text("u1 0 1 x\n")
    with pytest.raises(ValueError, match=r"a.txt:1: phone ids must be integers"):
        read_alignments(tmp_path / "a.txt")
    (tmp_path / "phones.txt").write_text("0 sil\n2 aa\n")
    with pytest.raises(ValueError, match=r"phones.txt:2"):
        read_phones(tmp_path / "phones.txt")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_alignments(tmp_path / "missing.txt")


def _write_librispeech_fixture(root: Path) -> dict[str, int]:
    """A tiny LibriSpeech-100 folder + the CPC paper's label files, in exactly their formats."""
    rng = np.random.default_rng(0)
    lengths = {"19-198-0000": 16000, "19-198-0001": 12345, "26-495-0000": 20000, "26-495-0003": 8000}
    chapters: dict[Path, list[str]] = {}
    for utterance, length in lengths.items():
        speaker, chapter, _ = utterance.split("-")
        folder = root / "LibriSpeech" / "train-clean-100" / speaker / chapter
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(
            folder / f"{utterance}.flac",
            (0.1 * rng.standard_normal(length)).astype(np.float32),
            16000,
            subtype="PCM_16",
        )
        chapters.setdefault(folder / f"{speaker}-{chapter}.trans.txt", []).append(f"{utterance} SOME WORDS\n")
    for path, lines in chapters.items():
        path.write_text("".join(lines))
    with open(root / "converted_aligned_phones.txt", "w") as handle:
        for utterance, length in lengths.items():
            ids = rng.integers(0, CPC_LIBRISPEECH_CLASSES - 1, size=length // FRAME_SAMPLES)
            handle.write(utterance + " " + " ".join(map(str, ids)) + "\n")
    (root / "train_split.txt").write_text("19-198-0000\n19-198-0001\n26-495-0000\n")
    (root / "test_split.txt").write_text("26-495-0003\n")
    return lengths


def test_librispeech_with_cpc_alignments_loads_through_the_same_loader(tmp_path):
    lengths = _write_librispeech_fixture(tmp_path)
    corpus = load_corpus(
        tmp_path / "LibriSpeech" / "train-clean-100",
        alignments=tmp_path / "converted_aligned_phones.txt",
        train_split=tmp_path / "train_split.txt",
        test_split=tmp_path / "test_split.txt",
    )
    assert sorted(corpus.files) == sorted(lengths)
    assert corpus.phone_names == [str(index) for index in range(41)]
    assert corpus.splits == {"train": ["19-198-0000", "19-198-0001", "26-495-0000"], "test": ["26-495-0003"]}
    assert corpus.speakers["26-495-0003"] == "26"
    for utterance, length in lengths.items():
        assert corpus.files[utterance].num_samples == length
        assert len(corpus.labels[utterance]) == length // FRAME_SAMPLES


def test_loader_lists_ids_that_have_no_audio(tmp_path):
    _write_librispeech_fixture(tmp_path)
    (tmp_path / "test_split.txt").write_text("26-495-0003\n99-1-0000\n98-1-0000\n")
    with pytest.raises(ValueError, match=r"test_split.txt names utterances with no audio file.*98-1-0000, 99-1-0000"):
        load_corpus(tmp_path / "LibriSpeech" / "train-clean-100", test_split=tmp_path / "test_split.txt")
    with open(tmp_path / "converted_aligned_phones.txt", "a") as handle:
        handle.write("77-1-0000 1 2 3\n")
    with pytest.raises(
        ValueError, match=r"converted_aligned_phones.txt names utterances with no audio file.*77-1-0000"
    ):
        load_corpus(tmp_path / "LibriSpeech" / "train-clean-100", alignments=tmp_path / "converted_aligned_phones.txt")


def check_built_corpus(root: Path) -> None:
    """The properties every corpus built by ``cpc data synth`` must have (shared with test_corpus_synth)."""
    corpus = load_corpus(root)
    assert corpus.phone_names == list(PHONES)
    assert set(corpus.labels) == set(corpus.files)
    for utterance, audio in corpus.files.items():
        labels = corpus.labels[utterance]
        assert audio.sample_rate == 16000
        assert len(labels) == audio.num_samples // FRAME_SAMPLES, utterance  # frame counts match audio
        assert labels.min() >= 0 and labels.max() < len(PHONES)
        speaker, chapter, _ = utterance.split("-")
        assert Path(audio.path).relative_to(root).parts == (speaker, chapter, f"{utterance}.flac")
    train, test, unseen = (set(corpus.splits[name]) for name in ("train", "test", "test_unseen_speakers"))
    assert train and test and unseen
    assert not train & test and not (train | test) & unseen
    assert train | test | unseen == set(corpus.files)
    train_speakers = {corpus.speakers[u] for u in train}
    assert {corpus.speakers[u] for u in test} <= train_speakers  # every test speaker has training data
    assert not {corpus.speakers[u] for u in unseen} & train_speakers  # speaker-disjoint
    speakers = read_speakers(root / "speakers.tsv")
    assert {row.speaker for row in speakers} == set(corpus.speakers.values())
    assert {row.speaker for row in speakers if row.held_out} == {corpus.speakers[u] for u in unseen}
    items = read_item(root / "abx" / "test.item")
    assert items and {row.file for row in items} <= test
    assert {row.phone for row in items} <= set(PHONES) - {"sil"}
    for row in items[:200]:
        frames = corpus.labels[row.file][int(row.onset * 100 + 0.5) : int(row.offset * 100 + 0.5)]
        if len(frames):  # the frames inside an item carry its phone
            assert PHONES[np.bincount(frames).argmax()] == row.phone


@pytest.mark.skipif(not (SAMPLE / "alignments.txt").is_file(), reason="data/sample is not present")
def test_committed_sample_is_complete_and_consistent():
    check_built_corpus(SAMPLE)
    size = sum(path.stat().st_size for path in SAMPLE.rglob("*") if path.is_file())
    assert size <= 10 * 2**20
