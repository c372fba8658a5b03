"""The text probe suite: tasks built from documents no run has trained on, that can tell whether
CPC learned anything (in the spirit of Conneau et al. 2018's probing tasks, and of CPC's own
objective), plus MR-like sentiment, kept honestly.

Documents: those of the built folder in the probe share (``data.probe_fraction``, the last 10 %
of the CRC-32 range of ``source/name``; cpc.text.source), which training and validation never
read. Every task is a pure function of those documents, the seed and the size.

    next_sentence    pair   does B follow A (1), or come from elsewhere in A's document (0)?  cross-sentence
    sentence_order   pair   are A, B two consecutive sentences in order (1) or swapped (0)?      cross-sentence
    bigram_shift     one    are two adjacent words swapped (1) or not (0)?                      word order
    sentence_length  one    words per sentence, 4 bins (balanced)                              surface
    word_content     one    which of 10 mid-frequency words does the sentence hold (balanced)? content
    mr               one    MR-like sentiment (film reviews, not the books; mr.tsv)             transfer

Single-sentence tasks render each sentence as its words joined by spaces (cpc.text.tokenizer.words),
so a shifted sentence and an intact one differ only in their order, never in their spacing.
Each task is written as ``<name>.tsv`` (``label<TAB>sentence`` or ``label<TAB>A<TAB>B``): any of
them can be probed again with ``cpc probe text --task FILE.tsv``.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from cpc.text.corpus import Document, read_documents, read_probe_set
from cpc.text.probe import Task, make_task
from cpc.text.source import probe_document
from cpc.text.tokenizer import words

log = logging.getLogger(__name__)

__all__ = ["CROSS_SENTENCE", "SUITE_TASKS", "build_suite", "held_out_documents", "write_tasks"]

SUITE_TASKS = ("next_sentence", "sentence_order", "bigram_shift", "sentence_length", "word_content", "mr")
CROSS_SENTENCE = ("next_sentence", "sentence_order")  # the answer needs more than one sentence
LENGTH_BINS = ((1, 8), (9, 16), (17, 32), (33, 10**9))  # word tokens per sentence (punctuation counts as a token)
CONTENT_WORDS, CONTENT_SKIP = 10, 100  # word_content: 10 words, after the 100 most frequent


def held_out_documents(root: str | Path, probe_fraction: float) -> list[Document]:
    """The documents of the built folder in the probe share, in file order."""
    return [document for document in read_documents(root) if probe_document(document[0], document[1], probe_fraction)]


def _render(sentence: str) -> list[str]:
    return words(sentence)


def _balanced_labels(count: int, rng: np.random.Generator) -> np.ndarray:
    """count labels, half 1 and half 0 (one more 0 when odd), in a seeded order."""
    return rng.permutation(np.arange(count) < count // 2).astype(np.int64)


def next_sentence(documents: list[Document], rng: np.random.Generator, size: int) -> Task:
    """(A = sentence i, B = sentence i + 1) -> 1; (A, B = a sentence j of the same document, j not i or i + 1) -> 0."""
    anchors = [
        (d, i)
        for d, (_, _, sentences) in enumerate(documents)
        if len(sentences) >= 3
        for i in range(len(sentences) - 1)
    ]
    chosen = [anchors[k] for k in rng.permutation(len(anchors))[:size]]
    rows = []
    for (d, i), label in zip(chosen, _balanced_labels(len(chosen), rng)):
        sentences = documents[d][2]
        if label:
            j = i + 1
        else:
            others = [j for j in range(len(sentences)) if j not in (i, i + 1)]
            j = others[int(rng.integers(len(others)))]
        rows.append((int(label), sentences[i], sentences[j]))
    return make_task("next_sentence", rows, pair=True)


def sentence_order(documents: list[Document], rng: np.random.Generator, size: int) -> Task:
    """Two consecutive sentences of a document: (A, B) in reading order -> 1, (B, A) -> 0."""
    anchors = [(d, i) for d, (_, _, sentences) in enumerate(documents) for i in range(len(sentences) - 1)]
    chosen = [anchors[k] for k in rng.permutation(len(anchors))[:size]]
    rows = []
    for (d, i), label in zip(chosen, _balanced_labels(len(chosen), rng)):
        first, second = documents[d][2][i], documents[d][2][i + 1]
        rows.append((int(label), first, second) if label else (0, second, first))
    return make_task("sentence_order", rows, pair=True)


def bigram_shift(documents: list[Document], rng: np.random.Generator, size: int) -> Task:
    """A sentence (its words) -> 0, or the same with two adjacent, different words swapped -> 1 (Conneau et al.'s BShift)."""
    candidates = []
    for _, _, sentences in documents:
        for sentence in sentences:
            tokens = _render(sentence)
            places = [
                i
                for i in range(len(tokens) - 1)
                if tokens[i].isalpha() and tokens[i + 1].isalpha() and tokens[i] != tokens[i + 1]
            ]
            if len(tokens) >= 4 and places:
                candidates.append((tokens, places))
    chosen = [candidates[k] for k in rng.permutation(len(candidates))[:size]]
    rows = []
    for (tokens, places), label in zip(chosen, _balanced_labels(len(chosen), rng)):
        tokens = list(tokens)
        if label:
            i = places[int(rng.integers(len(places)))]
            tokens[i], tokens[i + 1] = tokens[i + 1], tokens[i]
        rows.append((int(label), " ".join(tokens)))
    return make_task("bigram_shift", rows)


def _balanced_classes(by_class: dict[str, list[str]], rng: np.random.Generator, size: int) -> list[tuple[str, str]]:
    """The same number of sentences per class (the smallest class's, at most size // classes), seeded, then shuffled."""
    per_class = min(min(len(texts) for texts in by_class.values()), size // len(by_class))
    rows = [
        (label, texts[k]) for label, texts in by_class.items() for k in sorted(rng.permutation(len(texts))[:per_class])
    ]
    return [rows[k] for k in rng.permutation(len(rows))]


def sentence_length(documents: list[Document], rng: np.random.Generator, size: int) -> Task:
    """A sentence -> its bin of word tokens (LENGTH_BINS), balanced."""
    by_class: dict[str, list[str]] = {f"{low}-{high}" if high < 10**9 else f"{low}+": [] for low, high in LENGTH_BINS}
    for _, _, sentences in documents:
        for sentence in sentences:
            tokens = _render(sentence)
            for (low, high), label in zip(LENGTH_BINS, by_class):
                if low <= len(tokens) <= high:
                    by_class[label].append(" ".join(tokens))
    return make_task("sentence_length", _balanced_classes(by_class, rng, size))


def content_words(sentences: list[list[str]]) -> list[str]:
    """The 10 words word_content asks about: alphabetic, 4+ letters, the most frequent (by sentences holding them) after the first 100."""
    frequency = Counter(word for tokens in sentences for word in set(tokens) if word.isalpha() and len(word) >= 4)
    ranked = [word for word, _ in sorted(frequency.items(), key=lambda item: (-item[1], item[0]))]
    return ranked[CONTENT_SKIP : CONTENT_SKIP + CONTENT_WORDS]


def word_content(documents: list[Document], rng: np.random.Generator, size: int) -> Task:
    """A sentence holding exactly one of the 10 content words -> that word, balanced."""
    sentences = [_render(sentence) for _, _, texts in documents for sentence in texts]
    chosen = content_words(sentences)
    by_class: dict[str, list[str]] = {word: [] for word in chosen}
    for tokens in sentences:
        present = set(tokens) & set(chosen)
        if len(present) == 1:
            by_class[present.pop()].append(" ".join(tokens))
    return make_task("word_content", _balanced_classes(by_class, rng, size))


BUILDERS = {
    "next_sentence": next_sentence,
    "sentence_order": sentence_order,
    "bigram_shift": bigram_shift,
    "sentence_length": sentence_length,
    "word_content": word_content,
}


def build_suite(
    root: str | Path,
    *,
    probe_fraction: float = 0.1,
    seed: int = 0,
    size: int = 1000,
    mr_size: int | None = None,
    tasks=SUITE_TASKS,
) -> dict[str, Task]:
    """The suite's tasks (at most ``size`` examples each; ``mr_size`` examples of MR-like, default all) from the folder
    ``root`` built by ``cpc data text``; mr is left out (with a warning) when the folder has no mr.tsv."""
    documents = held_out_documents(root, probe_fraction)
    if not documents:
        raise ValueError(
            f"{root}: no document in the probe share (data.probe_fraction={probe_fraction}): the suite has no held-out text"
        )
    suite = {}
    for index, name in enumerate(tasks):
        rng = np.random.default_rng(
            np.random.SeedSequence([seed, index])
        )  # one stream per task: adding a task changes no other
        if name == "mr":
            try:
                texts, labels = read_probe_set(root, "mr")
            except FileNotFoundError as error:
                log.warning("suite: no MR-like task (%s)", error)
                continue
            keep = np.sort(rng.permutation(len(texts))[:mr_size]) if mr_size else np.arange(len(texts))
            suite[name] = Task("mr", [texts[k] for k in keep], labels[keep], ["0", "1"])
        else:
            suite[name] = BUILDERS[name](documents, rng, size)
        log.info("suite: %s, %d examples, classes %s", name, len(suite[name].texts), suite[name].class_counts())
    return suite


def write_tasks(suite: dict[str, Task], folder: str | Path) -> None:
    """Each task as ``folder/<name>.tsv``, readable by ``cpc probe text --task``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, task in suite.items():
        lines = [
            f"{task.classes[label]}\t" + ("\t".join(text) if task.pair else text)
            for text, label in zip(task.texts, task.labels)
        ]
        (folder / f"{name}.tsv").write_text("".join(line + "\n" for line in lines), encoding="utf-8")


# ----------------------------------------------------------------------------- probing
# (kind, layer, label): the rows of the suite's table. "random" is the checkpoint's architecture at a fresh
# initialisation drawn with the run's own training seed: CPC's control.
ROWS = (
    ("cpc", "encoder", "CPC z (sentence encoder)"),
    ("cpc", "both", "CPC [z, c]"),
    ("random", "encoder", "random-init encoder z"),
    ("random", "both", "random-init [z, c]"),
    ("embeddings", None, "mean of random word embeddings"),
    ("bow_same_dimension", None, "binary bag of words, the C most frequent words"),
    ("bow", None, "binary bag of words"),
    ("tfidf", None, "TF-IDF 1-2-grams"),
)
BASELINE_KINDS = (
    "bow_same_dimension",
    "bow",
    "tfidf",
)  # rows that do not depend on the checkpoint's weights nor its seed


def probe_suite(
    checkpoint: str | Path,
    suite: dict[str, Task],
    *,
    rows=ROWS,
    folds: int = 10,
    seed: int = 0,
    threads: int | None = 1,
    cache: dict | None = None,
    grid=None,
) -> list[dict]:
    """Every row of ``rows`` on every task -> [{kind, layer, name, results: {task: result}}]. A task the protocol cannot
    score (too few examples per class for ``folds``) gets ``{"skipped": reason}``. ``cache``: a dict of earlier results of the
    rows that do not depend on the trained weights (random, embeddings, bow, tfidf), keyed by row, seed and task. ``grid``: the
    C values tried inside each fold (default: the protocol's, cpc.text.probe.C_GRID)."""
    from cpc.checkpoint import load, load_checkpoint
    from cpc.text.probe import C_GRID, _model, check_task, text_probe

    grid = tuple(grid or C_GRID)
    config = load_checkpoint(checkpoint)["config"]
    training_seed, latent_size = config["train"]["seed"], config["model"]["encoder"]["latent_size"]
    cache = {} if cache is None else cache
    table = []
    for kind, layer, label in rows:
        if kind == "cpc":
            model = load(checkpoint)
        elif kind in ("random", "embeddings"):
            model = _model("random", str(checkpoint), training_seed)
        else:
            model = None
        key = f"{kind}/{layer}/" + ("" if kind in BASELINE_KINDS else f"seed-{training_seed}/{latent_size}")
        results = {}
        for name, task in suite.items():
            try:
                check_task(task, folds)
            except ValueError as error:
                results[name] = {"skipped": str(error)}
                continue
            cache_key = f"{key}/{name}/{len(task.texts)}/{folds}/{','.join(map(str, grid))}"
            if kind != "cpc" and cache_key in cache:
                results[name] = cache[cache_key]
                continue
            features = {"cpc": str(checkpoint), "bow_same_dimension": "bow"}.get(kind, kind)
            results[name] = text_probe(
                features,
                task=task,
                layer=layer or "encoder",
                architecture=str(checkpoint),
                seed=seed,
                threads=threads,
                folds=folds,
                vocabulary=latent_size if kind == "bow_same_dimension" else None,
                model=model,
                grid=grid,
            )
            if kind != "cpc":
                cache[cache_key] = results[name]
        table.append({"kind": kind, "layer": layer, "name": label, "results": results})
    return table


def suite_table(table: list[dict], tasks) -> str:
    """Markdown: one row per feature set, one column per task (accuracy ± std over the folds, %); cross-sentence tasks marked *."""
    header = [f"{name}{' *' if name in CROSS_SENTENCE else ''}" for name in tasks]
    lines = ["| features | " + " | ".join(header) + " |", "|---|" + "---:|" * len(tasks)]
    for row in table:
        cells = []
        for name in tasks:
            result = row["results"].get(name)
            cells.append(
                "–" if result is None or "skipped" in result else f"{result['accuracy']:.1f} ± {result['std']:.1f}"
            )
        lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def control_margins(table: list[dict], tasks) -> dict[str, dict[str, float]]:
    """CPC minus its random-init control, per layer (z, [z, c]) and task, in accuracy points."""
    by = {(row["kind"], row["layer"]): row["results"] for row in table}
    margins = {}
    for layer in ("encoder", "both"):
        cpc, random = by.get(("cpc", layer)), by.get(("random", layer))
        if cpc and random:
            margins[layer] = {
                name: round(cpc[name]["accuracy"] - random[name]["accuracy"], 2)
                for name in tasks
                if "accuracy" in cpc.get(name, {}) and "accuracy" in random.get(name, {})
            }
    return margins
