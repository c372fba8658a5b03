"""The probe suite on a tiny build: each task's labels are what the task says, its documents are
never read by training, the build is deterministic, and the demo writes the suite's table."""

import numpy as np
import pytest
import torch

from cpc.config import load_config
from cpc.text.corpus import read_documents
from cpc.text.probe import read_task_file
from cpc.text.source import TextData, probe_document
from cpc.text.suite import LENGTH_BINS, build_suite, content_words, held_out_documents, write_tasks
from cpc.text.tokenizer import words


@pytest.fixture(scope="module")
def suite(text_data_dir):
    return build_suite(text_data_dir, probe_fraction=0.1, size=400, mr_size=100)


def test_held_out_documents_are_never_read_by_training(text_data_dir):
    held = held_out_documents(text_data_dir, 0.1)
    assert held and all(probe_document(source, name, 0.1) for source, name, _ in held)
    config = load_config("text/books", [f"data.root={text_data_dir}", "train.batch_size=2", "data.valid_fraction=0.1"])
    read = set(TextData(config, device=torch.device("cpu")).document_names)
    assert read and not read & {f"{source}/{name}" for source, name, _ in held}
    assert len(read) + len(held) == len(read_documents(text_data_dir))  # every document is in exactly one of the two


def test_each_task_labels_what_it_says(text_data_dir, suite):
    held = held_out_documents(text_data_dir, 0.1)
    position = {}  # sentence -> every (document, index) it occurs at (verses and sayings repeat)
    for d, (_, _, sentences) in enumerate(held):
        for i, sentence in enumerate(sentences):
            position.setdefault(sentence, set()).add((d, i))

    def related(a, b, relation):
        return any(da == db and relation(ia, ib) for da, ia in position[a] for db, ib in position[b])

    rendered = {" ".join(words(sentence)) for _, _, sentences in held for sentence in sentences}

    task = suite["next_sentence"]
    assert task.pair and task.classes == ["0", "1"] and set(task.labels.tolist()) == {0, 1}
    for (a, b), label in zip(
        task.texts, task.labels
    ):  # the same document; B next to A when labelled 1, elsewhere when 0
        assert related(a, b, (lambda i, j: j == i + 1) if label else (lambda i, j: j not in (i, i + 1)))

    task = suite["sentence_order"]
    for (a, b), label in zip(task.texts, task.labels):
        assert related(a, b, (lambda i, j: j == i + 1) if label else (lambda i, j: i == j + 1))

    task = suite["bigram_shift"]
    assert abs(int(task.labels.sum()) - len(task.labels) / 2) <= 1
    for text, label in zip(task.texts, task.labels):
        if not label:
            assert text in rendered
            continue
        assert text not in rendered  # a swap of two different words is never the original
        tokens = text.split()
        swaps = [tokens[:i] + [tokens[i + 1], tokens[i]] + tokens[i + 2 :] for i in range(len(tokens) - 1)]
        assert any(" ".join(swap) in rendered for swap in swaps)  # one adjacent swap away from a held-out sentence

    task = suite["sentence_length"]
    counts = task.class_counts()
    assert len(set(counts.values())) == 1  # balanced
    bins = {f"{low}-{high}" if high < 10**9 else f"{low}+": (low, high) for low, high in LENGTH_BINS}
    for text, label in zip(task.texts, task.labels):
        low, high = bins[task.classes[label]]
        assert low <= len(text.split()) <= high

    task = suite["word_content"]
    chosen = set(content_words([words(s) for _, _, sentences in held for s in sentences]))
    assert set(task.classes) == chosen
    for text, label in zip(task.texts, task.labels):
        assert set(text.split()) & chosen == {task.classes[label]}

    assert len(suite["mr"].texts) == 100


def test_the_suite_is_deterministic_and_written_as_task_files(text_data_dir, suite, tmp_path):
    again = build_suite(text_data_dir, probe_fraction=0.1, size=400, mr_size=100)
    for name, task in suite.items():
        assert task.texts == again[name].texts and np.array_equal(task.labels, again[name].labels), name
    write_tasks(suite, tmp_path)
    for name, task in suite.items():
        read = read_task_file(tmp_path / f"{name}.tsv")
        assert (
            read.pair == task.pair
            and read.texts == task.texts
            and [read.classes[i] for i in read.labels] == [task.classes[i] for i in task.labels]
        )
