"""Text data: the R database reader, sentence splitting, the MR-like set, hashed n-grams, a
deterministic build that keeps reading order, and the data source's batches."""

import json
import struct
import zlib

import pytest
import torch
from conftest import TEXT_SLICE_DOCUMENTS

from cpc.config import ConfigError, load_config
from cpc.text.corpus import build_text_data, mr_like, read_documents, read_probe_set, split_sentences
from cpc.text.rdata import unserialize
from cpc.text.source import TextData, probe_document, windows
from cpc.text.tokenizer import HashedNgrams, words


# ----------------------------------------------------------------------------- R serialisation
def _xdr_header() -> bytes:
    return b"X\n" + struct.pack(">iii", 3, 0x040201, 0x030500) + struct.pack(">i", 5) + b"UTF-8"


def _charsxp(text: str | None) -> bytes:
    if text is None:
        return struct.pack(">ii", 9, -1)
    data = text.encode("utf-8")
    return struct.pack(">ii", 9 | (1 << 15), len(data)) + data


def _strsxp(values, attributes: bytes = b"") -> bytes:
    flags = 16 | ((1 << 9) if attributes else 0)
    return struct.pack(">ii", flags, len(values)) + b"".join(_charsxp(v) for v in values) + attributes


def test_unserialize_reads_a_named_list_of_character_vectors_written_by_hand():
    # list(a = c("x", NA), b = "é") as R serialises it (version 3, XDR), written field by field.
    names = (
        struct.pack(">i", 2 | (1 << 10))
        + struct.pack(">i", 1)
        + _charsxp("names")
        + _strsxp(["a", "b"])
        + struct.pack(">i", 254)
    )
    blob = _xdr_header() + struct.pack(">ii", 19 | (1 << 9), 2) + _strsxp(["x", None]) + _strsxp(["é"]) + names
    assert unserialize(blob) == {"a": ["x", None], "b": ["é"]}
    with pytest.raises(ValueError, match="XDR header"):
        unserialize(b"A\n" + blob[2:])
    with pytest.raises(ValueError, match="type 3 is not supported"):
        unserialize(_xdr_header() + struct.pack(">i", 3))


def test_janeaustenr_database_holds_the_six_novels():
    from cpc.text.corpus import MissingSourceError, janeaustenr_dir
    from cpc.text.rdata import read_lazy_load_database

    try:
        directory = janeaustenr_dir()
    except MissingSourceError as error:
        pytest.skip(str(error))
    novels = read_lazy_load_database(directory)
    assert sorted(novels) == [
        "emma",
        "mansfieldpark",
        "northangerabbey",
        "persuasion",
        "prideprejudice",
        "sensesensibility",
    ]
    assert novels["emma"][:3] == ["EMMA", "", "By Jane Austen"]
    assert (
        700_000 < sum(len((line or "").split()) for lines in novels.values() for line in lines) < 730_000
    )  # "about 717k words"


# ----------------------------------------------------------------------------- sentences, MR-like, n-grams
def test_split_sentences_keeps_abbreviations_and_quotes_together():
    text = 'Mr. Knightley came in. "Is she well?" said Emma. Yes! She is, at 3 p.m. exactly. 12 came.'
    assert split_sentences(text) == [
        "Mr. Knightley came in.",
        '"Is she well?" said Emma.',
        "Yes!",
        "She is, at 3 p.m. exactly.",
        "12 came.",
    ]
    assert split_sentences("_Italic_ words\tand  spaces") == ["Italic words and spaces"]


def test_mr_like_is_balanced_deduplicated_and_drops_conflicts():
    rows = [
        ("fresh", "Good film."),
        ("fresh", "good  film."),
        ("rotten", "Bad."),
        ("fresh", "Great."),
        ("rotten", "Mixed."),
        ("fresh", "Mixed."),
        ("plot", "A plot."),
        ("fresh", "Fine."),
        ("rotten", "Dull."),
    ]
    out = mr_like(rows, seed=0)
    assert sorted(label for label, _ in out) == [
        0,
        0,
        1,
        1,
    ]  # 3 fresh left for 2 rotten: one dropped by the seeded choice
    texts = [text for _, text in out]
    assert "Mixed." not in texts and "A plot." not in texts and {"Bad.", "Dull."} <= set(texts)
    assert texts == sorted(texts, key=[text for _, text in rows].index)  # the file's order
    assert out == mr_like(rows, seed=0)


def test_hashed_ngrams_against_a_reference_and_padding():
    tokenizer = HashedNgrams(buckets=1000, min_n=3, max_n=4, max_ngrams=8)
    units = ["<cat>", "3:<ca", "3:cat", "3:at>", "4:<cat", "4:cat>"]  # the whole word first, then 3- and 4-grams
    assert tokenizer.ngram_ids("cat") == [zlib.crc32(u.encode()) % 999 + 1 for u in units]
    assert tokenizer.ngram_ids("a") == [zlib.crc32(b"<a>") % 999 + 1, zlib.crc32(b"3:<a>") % 999 + 1]
    assert len(tokenizer.ngram_ids("extraordinarily")) == 8
    ids = tokenizer.encode(["The cat.", "A dog sat down"], max_words=3)  # (N, L, G)
    assert ids.shape == (2, 3, 8) and (ids[0, 2] != 0).any() and (ids[0, :, 0] != 0).all()
    assert ids[0, 0].tolist()[:1] == tokenizer.ngram_ids("the")[:1]
    assert words("Don't GO, now!") == ["don't", "go", ",", "now", "!"]


def test_a_missing_source_is_one_line_with_the_install_command(tmp_path, monkeypatch):
    from cpc.text.corpus import MissingSourceError, read_bible, read_fortunes

    with pytest.raises(MissingSourceError, match=r"^no fortune files in .*: run `apt-get install bible-kjv fortunes`$"):
        read_fortunes(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # no `bible` program
    with pytest.raises(MissingSourceError, match=r"run `apt-get install bible-kjv fortunes`$"):
        read_bible()


def test_windows_start_every_stride_and_need_a_next_sentence():
    assert windows([1, 3, 10], window=4, stride=3).tolist() == [[1, 0, 3], [2, 0, 4], [2, 3, 4], [2, 6, 4]]


# ----------------------------------------------------------------------------- the built folder
def test_build_is_deterministic_and_keeps_reading_order(text_data_dir, tmp_path):
    again = tmp_path / "again"
    build_text_data(again, max_documents=TEXT_SLICE_DOCUMENTS)  # the fixture's slice, built a second time
    for name in ("sentences.tsv", "mr.tsv", "political.tsv", "manifest.json"):
        assert (again / name).read_bytes() == (text_data_dir / name).read_bytes(), name
    documents = read_documents(again)
    names = [(source, name) for source, name, _ in documents]
    assert (
        names[:3] == [("bible", "Ge1"), ("bible", "Ge2"), ("bible", "Ge3")] and len(names) == 3 * TEXT_SLICE_DOCUMENTS
    )
    assert names[TEXT_SLICE_DOCUMENTS : TEXT_SLICE_DOCUMENTS + 2] == [
        ("austen", "sensesensibility/01"),
        ("austen", "sensesensibility/02"),
    ]
    assert documents[0][2][:2] == [
        "In the beginning God created the heaven and the earth.",
        "And the earth was without form, and void; and darkness was upon the face of the deep. "
        "And the Spirit of God moved upon the face of the waters.",
    ]
    assert len(documents[0][2]) == 31  # Genesis 1 has 31 verses
    manifest = json.loads((text_data_dir / "manifest.json").read_text())
    texts, labels = read_probe_set(text_data_dir, "mr")
    assert len(texts) == manifest["probe_sets"]["mr"]["examples"] == 400 and set(labels.tolist()) == {0, 1}


def _source(root, start_step: int = 0, **overrides):
    settings = {
        "data.root": root,
        "train.batch_size": 4,
        "train.valid_batches": 2,
        "data.window": 5,
        "data.valid_fraction": 0.1,
        **overrides,
    }
    return TextData(
        load_config("text/books", [f"{k}={v}" for k, v in settings.items()]),
        start_step=start_step,
        device=torch.device("cpu"),
    )


@pytest.mark.slow
def test_batches_are_a_pure_function_of_seed_and_step(text_data_dir):
    first, resumed = _source(text_data_dir).train_batches(), _source(text_data_dir, start_step=7).train_batches()
    for _ in range(7):
        next(first)
    for _ in range(3):  # a resumed source continues exactly where the uninterrupted one is
        (ids, lengths), (ids_resumed, lengths_resumed) = next(first), next(resumed)
        assert torch.equal(ids, ids_resumed) and torch.equal(lengths, lengths_resumed)
    other_seed, _ = next(_source(text_data_dir, **{"train.seed": 1}).train_batches())
    assert ids.dim() == 4 and ids.shape[0] == 4 and ids.shape[1] <= 5 and int(lengths.max()) == ids.shape[1]
    assert not torch.equal(next(_source(text_data_dir).train_batches())[0], other_seed)
    with pytest.raises(ConfigError, match=r"data.sources: \['novels'\] not among"):
        _source(text_data_dir, **{"data.sources": "[austen,novels]"})
    austen = _source(text_data_dir, **{"data.sources": "[austen]"})
    probe_share = [
        name
        for source, name, _ in read_documents(text_data_dir)
        if source == "austen" and probe_document(source, name, 0.1)
    ]
    assert probe_share and len(austen.document_starts) == TEXT_SLICE_DOCUMENTS - len(
        probe_share
    )  # the slice's Austen chapters, less the probe suite's
    source = _source(text_data_dir)
    held_out = set(source.valid_windows[:, 0].tolist())
    assert source.valid_batches() and held_out and not held_out & set(source.train_windows[:, 0].tolist())


def test_a_batch_holds_consecutive_sentences_of_one_document_padded(text_data_dir):
    source = _source(text_data_dir)
    documents = read_documents(text_data_dir)
    rows = source.train_windows[:3]
    ids, lengths = source.batch(rows)
    tokenizer = source.tokenizer
    for b, (doc, start, count) in enumerate(rows.tolist()):
        assert lengths[b] == count
        for t in range(count):
            sentence = words(documents[doc][2][start + t])[: source.data.max_words]
            expected = torch.from_numpy(
                tokenizer.encode([" ".join(sentence)], max_words=source.data.max_words)[0]
            )  # (L, G)
            assert torch.equal(ids[b, t, : len(expected)], expected) and not ids[b, t, len(expected) :].any()
        assert not ids[b, count:].any()  # padded sentences are all padding
