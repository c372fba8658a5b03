"""Your own corpus (`cpc data text --from`): plain text and JSON Lines in, bad inputs skipped and
counted, a deterministic folder out that trains; the sentence splitter on hard cases."""

import json
import logging

import pytest

from cpc.cli import main
from cpc.text.corpus import build_text_data, read_documents, split_sentences
from cpc.text.files import read_corpus_files

STORY = "It was late. The rain had stopped.\n\nShe opened the door... Nobody was there.\nShe waited.\n"


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            'Mr. Knightley came in. "Is she well?" said Emma. Yes!',
            ["Mr. Knightley came in.", '"Is she well?" said Emma.', "Yes!"],
        ),
        (
            "Dr. Smith et al. agree, e.g. in Fig. 3. U.S. troops left.",
            ["Dr. Smith et al. agree, e.g. in Fig. 3.", "U.S. troops left."],
        ),
        ('I said: "No." Then I left.', ['I said: "No."', "Then I left."]),  # the closing quote stays with its sentence
        ("She said no. Then she went. See No. 5 for more.", ["She said no.", "Then she went.", "See No. 5 for more."]),
        ("He left... And never came back. Wait... what?", ["He left...", "And never came back.", "Wait... what?"]),
        (
            "It cost $3.50 in 1999. It was 2.5 km away at 3 p.m. today.",
            ["It cost $3.50 in 1999.", "It was 2.5 km away at 3 p.m. today."],
        ),
        (
            "(He left.) J. R. R. Tolkien wrote it. It was I. Then we left.",
            ["(He left.)", "J. R. R. Tolkien wrote it.", "It was I.", "Then we left."],
        ),
    ],
)
def test_split_sentences_on_abbreviations_quotes_ellipses_and_numbers(text, expected):
    assert split_sentences(text) == expected


def _bad_inputs(folder):
    folder.mkdir()
    (folder / "a_story.txt").write_text(STORY)
    (folder / "b_empty.txt").write_text("  \n\n ")
    (folder / "c_binary.txt").write_bytes(b"GIF89a\x00\x01\x02 not text")
    (folder / "d_latin1.txt").write_bytes("Caf\xe9 au lait. Tr\xe8s bien.".encode("latin-1"))
    (folder / "e_one.txt").write_text("Only one sentence here.\n")
    (folder / "ignored.md").write_text("Not a .txt file. Not read.")
    lines = [
        json.dumps({"text": "First line. Second line."}),
        "{not json",
        json.dumps({"title": "no text"}),
        "",
        json.dumps({"text": "Alone."}),
        json.dumps({"text": "Para one.\n\nPara two. Three."}),
    ]
    (folder / "f_docs.jsonl").write_text("\n".join(lines) + "\n")


def test_bad_inputs_are_skipped_counted_and_named(tmp_path, caplog):
    _bad_inputs(tmp_path / "mine")
    with caplog.at_level(logging.WARNING):
        report = read_corpus_files([tmp_path / "mine"])
        report.warn()
    assert [name for _, name, _ in report.documents] == [
        "mine/a_story.txt",
        "mine/f_docs.jsonl:1",
        "mine/f_docs.jsonl:6",
    ]
    assert report.documents[0][2] == [
        "It was late.",
        "The rain had stopped.",
        "She opened the door...",
        "Nobody was there.",
        "She waited.",
    ]
    assert report.documents[2][2] == ["Para one.", "Para two.", "Three."]
    assert {reason: names for reason, names in report.skipped.items()} == {
        "empty": ["mine/b_empty.txt"],
        "binary": ["mine/c_binary.txt"],
        "undecodable": ["mine/d_latin1.txt (byte 3)"],
        "bad_json": ["mine/f_docs.jsonl:2", "mine/f_docs.jsonl:3"],
        "one_sentence": ["mine/e_one.txt", "mine/f_docs.jsonl:5"],
    }
    warnings = [record.getMessage() for record in caplog.records]
    assert "skipped 1 input: binary (a NUL byte in the first 8 KiB): mine/c_binary.txt" in warnings
    assert any(w.startswith("skipped 2 inputs: fewer than two sentences") for w in warnings)
    with pytest.raises(FileNotFoundError, match="--from .*nowhere: no such file or folder"):
        read_corpus_files([tmp_path / "nowhere"])


def test_build_from_files_is_deterministic_summarised_and_trains(tmp_path):
    _bad_inputs(tmp_path / "mine")
    long = " ".join(f"word{i}" for i in range(60)) + ". " + "Short one. " * 3
    (tmp_path / "long.txt").write_text(long)
    paths = [tmp_path / "mine", tmp_path / "long.txt"]
    out, again = tmp_path / "out", tmp_path / "again"
    manifest = build_text_data(
        out, paths=paths, wheel=tmp_path / "no-such.whl", max_words=48
    )  # no probe sets: a warning, not an error
    build_text_data(again, paths=paths, wheel=tmp_path / "no-such.whl", max_words=48)
    assert (out / "sentences.tsv").read_bytes() == (again / "sentences.tsv").read_bytes()
    assert manifest["summary"] == {
        "documents": 4,
        "sentences": 14,
        "words": 91,
        "max_words": 48,
        "truncated_percent": 7.14,
    }  # 1 of 14 cut
    assert manifest["skipped"] == {"empty": 1, "binary": 1, "undecodable": 1, "bad_json": 2, "one_sentence": 2}
    assert manifest["probe_sets"] is None and not (out / "mr.tsv").exists()
    assert [doc[:2] for doc in read_documents(out)][-1] == ("corpus", "long.txt")
    assert build_text_data(out, paths=paths) == manifest  # a finished build is kept
    with pytest.raises(FileExistsError, match="holds another build .*--overwrite"):
        build_text_data(out)  # the books would replace it: refused
    run = tmp_path / "run"
    overrides = [
        f"data.root={out}",
        "data.window=3",
        "data.window_stride=1",
        "data.valid_fraction=0",
        "data.probe_fraction=0",
        "train.batch_size=2",
        "train.max_steps=2",
        "train.log_every=1",
        "train.valid_every=2",
        "train.valid_batches=1",
        "train.checkpoint_every=2",
        "train.progress=false",
        "train.threads=1",
        "model.encoder.buckets=512",
        "model.encoder.latent_size=16",
        "model.context.hidden_size=16",
        "model.loss.num_negatives=4",
        "model.predictor.prediction_steps=2",
    ]
    assert main(["train", "text/books", "--run-dir", str(run), *overrides, "data.sources=[corpus]"]) == 0
    assert (run / "checkpoints" / "last.pt").is_file()


def test_cli_from_reports_and_refuses_nothing_usable(tmp_path, capsys):
    (tmp_path / "a.txt").write_text(STORY)
    assert (
        main(["data", "text", "--from", str(tmp_path / "a.txt"), "--out", str(tmp_path / "out"), "--max-words", "4"])
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert (
        printed["summary"]["sentences"] == 5 and printed["summary"]["truncated_percent"] == 40.0
    )  # "The rain had stopped." and "She opened the door..." are over 4 tokens
    (tmp_path / "b.txt").write_bytes(b"\x00\x00")
    assert main(["data", "text", "--from", str(tmp_path / "b.txt"), "--out", str(tmp_path / "none")]) == 2
    assert "no document of two or more sentences (skipped: 1 binary)" in capsys.readouterr().err
    assert main(["data", "text", "--from", str(tmp_path / "missing"), "--out", str(tmp_path / "none")]) == 2
