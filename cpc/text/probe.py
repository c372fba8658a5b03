"""``cpc probe text``: any labelled sentence task from frozen sentence features, SentEval's protocol.

    cpc probe text --features CHECKPOINT|tfidf|bow|random|embeddings --task mr|political|FILE.tsv [--layer encoder] --json OUT

``--task FILE.tsv``: your own task, one example per line, ``label<TAB>sentence`` (any labels,
any number of classes), or ``label<TAB>sentence A<TAB>sentence B`` for a task on sentence
pairs (the probe suite's cross-sentence tasks, cpc.text.suite, are written in this form).
Refused, with the counts: a task of one class, or a class with too few examples for the folds
(each needs at least ``--folds`` examples, and ``INNER_FOLDS`` in every training fold).
Examples whose sentence has no word are skipped and counted in a warning.

Protocol (SentEval's binary tasks, Conneau & Kiela 2018, as the paper's section 3.3 used):

* Features, one vector per example: the CPC model's sentence latent z (``--layer encoder``, the
  default), the context c after that one sentence (``context``) or [z, c] (``both``); the review
  is encoded as one sentence. Baselines: ``random`` (the checkpoint's architecture, fresh weights:
  what the architecture alone gives), ``embeddings`` (the mean over words of a random-init
  model's word embeddings: random hashed n-gram vectors, averaged), ``bow`` (binary bag of words)
  and ``tfidf`` (TF-IDF of word 1- and 2-grams); the two sparse ones are fitted inside each
  training fold.
* Classifier: logistic regression (scikit-learn, L2), on standardised dense features.
* 10-fold stratified cross-validation (seeded); inside each training fold, the L2 weight C is
  chosen from ``C_GRID`` by an inner 5-fold cross-validation (GridSearchCV, accuracy), then
  refitted on the whole training fold and scored on the held-out fold.
* Reported: ``accuracy`` and ``std`` (over the 10 folds), in percent, plus the per-fold
  accuracies, the chosen C values, ``dimensions``, ``examples`` and ``seconds``.

Sentence pairs (A, B): the features are SentEval's pair form [f(A), f(B), f(A) * f(B), |f(A) - f(B)|];
for CPC the pair is read as a sequence of two sentences, so B's context c has read A (the
cross-sentence information CPC is trained to carry), and with c (``context``, ``both``) the
element-wise product W_1 c_A * z_B is added: its sum is CPC's own score for "B follows A" (the
random-init control gets the same from its random W_1). bow / tfidf: [v(A), v(B), v(A) * v(B)].

``--task political``: the convention speeches (democrat / republican, 189): a speech's features
are the mean of its sentences' features (bow / tfidf: the whole speech); the same protocol.

Also measured: the out-of-vocabulary rate of the probe text against the training text, for
words and for the encoder's hashed n-grams (``oov``, see :func:`oov_rates`).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from cpc.text.corpus import DEFAULT_ROOT, read_documents, read_probe_set, split_sentences
from cpc.text.tokenizer import HashedNgrams, words

log = logging.getLogger(__name__)

__all__ = [
    "BASELINES",
    "C_GRID",
    "LAYERS",
    "Task",
    "check_task",
    "cross_validate",
    "load_task",
    "make_task",
    "oov_rates",
    "pair_features",
    "read_task_file",
    "sentence_features",
    "text_probe",
]

BASELINES = ("tfidf", "bow", "random", "embeddings")
LAYERS = ("encoder", "context", "both")
TASKS = ("mr", "political")
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # inverse L2 weights tried inside each training fold
# The comparison's grid: lbfgs at C >= 100 on 2048-d pair features is most of the probe's time and rarely chosen.
QUICK_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
FOLDS, INNER_FOLDS = 10, 5
PROBE_MAX_WORDS = 64  # words kept per probe sentence (MR snippets: 21 on average)


@dataclass
class Task:
    """A labelled probe task: ``texts`` (N,) sentences, or (N,) (A, B) pairs when ``pair``; ``labels`` (N,) int
    indices into ``classes``."""

    name: str
    texts: list
    labels: np.ndarray
    classes: list[str]
    pair: bool = False

    def class_counts(self) -> dict[str, int]:
        return {name: int((self.labels == index).sum()) for index, name in enumerate(self.classes)}


def minimum_per_class(folds: int) -> int:
    """The fewest examples a class may have: one in each of ``folds`` test folds and ``INNER_FOLDS`` in every training fold."""
    count = folds
    while (
        count - -(-count // folds) < INNER_FOLDS
    ):  # a class's training fold loses up to ceil(count / folds) of its examples
        count += 1
    return count


def check_task(task: Task, folds: int) -> None:
    """Refuse, naming the counts, a task the protocol cannot score: ``folds`` < 2, one class, or a class too small for the folds."""
    if folds < 2:
        raise ValueError(f"--folds {folds}: cross-validation needs at least 2 folds (the protocol: {FOLDS})")
    counts = task.class_counts()
    shown = ", ".join(f"{name!r}: {count}" for name, count in counts.items())
    if len(counts) < 2:
        raise ValueError(f"task {task.name}: one class ({shown}): a probe needs at least two")
    needed = minimum_per_class(folds)
    small = {name: count for name, count in counts.items() if count < needed}
    if small:
        raise ValueError(
            f"task {task.name}: {', '.join(f'{name!r} has {count}' for name, count in small.items())} examples; "
            f"{folds}-fold cross-validation (with {INNER_FOLDS} inner folds) needs at least {needed} per class (counts: {shown})"
        )


def make_task(name: str, rows: list[tuple], *, pair: bool | None = None) -> Task:
    """(label, sentence) or (label, A, B) rows -> a Task; labels sorted (numbers as numbers); rows with an empty sentence skipped and counted."""
    kept = [row for row in rows if all(words(text) for text in row[1:])]
    if len(kept) < len(rows):
        log.warning(
            "task %s: skipped %d of %d examples with an empty sentence (no word)",
            name,
            len(rows) - len(kept),
            len(rows),
        )
    labels = sorted(
        {str(row[0]) for row in kept}, key=lambda label: (0, float(label), label) if _number(label) else (1, 0.0, label)
    )
    index = {label: i for i, label in enumerate(labels)}
    width = {len(row) for row in kept}
    is_pair = (width == {3}) if pair is None else pair
    texts = [(row[1], row[2]) if is_pair else row[1] for row in kept]
    return Task(name, texts, np.array([index[str(row[0])] for row in kept], dtype=np.int64), labels, is_pair)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_task_file(path: str | Path) -> Task:
    """``label<TAB>sentence`` or ``label<TAB>A<TAB>B`` lines (UTF-8, all lines of one form) -> a Task named after the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--task {path}: no such file (expected label<TAB>sentence lines)")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) not in (2, 3) or not fields[0].strip():
            raise ValueError(
                f"{path}:{number}: expected label<TAB>sentence (or label<TAB>sentence A<TAB>sentence B), got {len(fields)} field(s)"
            )
        rows.append((fields[0].strip(), *fields[1:]))
    if not rows:
        raise ValueError(f"--task {path}: no examples")
    if len({len(row) for row in rows}) > 1:
        raise ValueError(f"{path}: mixes single sentences and sentence pairs; one form per file")
    return make_task(path.stem, rows)


def load_task(task: str | Task, root: str | Path = DEFAULT_ROOT) -> Task:
    """``mr``, ``political`` (the built folder's sets), a ``.tsv`` file, or a Task as it is."""
    if isinstance(task, Task):
        return task
    if task in TASKS:
        texts, labels = read_probe_set(root, task)
        return make_task(
            task, [(int(label), text) for label, text in zip(labels, texts)], pair=False
        )  # empty sentences skipped, counted
    if task.endswith(".tsv") or Path(task).is_file():
        return read_task_file(task)
    raise ValueError(f"--task {task!r}: expected one of {', '.join(TASKS)} or a label<TAB>sentence .tsv file")


@torch.inference_mode()
def pair_features(
    model: nn.Module,
    pairs: list[tuple[str, str]],
    *,
    layer: str = "encoder",
    max_words: int = PROBE_MAX_WORDS,
    batch_size: int = 256,
) -> Tensor:
    """(A, B) pairs (N,) -> (N, 4D [+ C]): [f(A), f(B), f(A) * f(B), |f(A) - f(B)|], f per sentence as in :func:`sentence_features`;
    the pair is one sequence of two sentences, so B's context has read A. With the context (``context``, ``both``) also
    W_1 c_A * z_B (C): the terms of CPC's score for "B is the sentence after A"."""
    if layer not in (*LAYERS, "words"):
        raise ValueError(f"layer={layer!r}: expected one of {LAYERS}")
    model.eval()
    tokenizer: HashedNgrams = model.encoder.tokenizer
    rows = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        ids = torch.from_numpy(tokenizer.encode([text for pair in chunk for text in pair], max_words))  # (2B, L, G)
        ids = ids.view(len(chunk), 2, *ids.shape[1:])  # (B, 2, L, G): A then B
        if layer == "words":
            embedded = model.encoder.embed_words(ids)  # (B, 2, L, E)
            present = (ids[..., 0] != 0).unsqueeze(-1).to(embedded.dtype)  # (B, 2, L, 1)
            per_sentence = (embedded * present).sum(2) / present.sum(2).clamp(min=1)  # (B, 2, E)
        else:
            latents, _ = model.encoder(ids)  # (B, 2, C)
            parts = [latents] if layer in ("encoder", "both") else []
            if layer in ("context", "both"):
                context, _ = model.context(latents)  # (B, 2, H): c_B after A and B
                parts.append(context)
            per_sentence = torch.cat(parts, dim=-1)  # (B, 2, D)
        a, b = per_sentence[:, 0], per_sentence[:, 1]
        features = [a, b, a * b, (a - b).abs()]
        offsets = list(getattr(getattr(model, "predictors", None), "offsets", ()))
        if layer in ("context", "both") and 1 in offsets:
            # CPC's own read-out of "B follows A": the score W_1 c_A . z_B is the sum of this product (eq. 3).
            predicted = model.predictors(context)[
                :, 0, offsets.index(1)
            ]  # (B, C): W_1 c_A, the latent predicted one sentence ahead
            features.append(predicted * latents[:, 1])  # (B, C)
        rows.append(torch.cat(features, dim=1))  # (B, 4D [+ C])
    return torch.cat(rows).float()


@torch.inference_mode()
def sentence_features(
    model: nn.Module,
    sentences: list[str],
    *,
    layer: str = "encoder",
    max_words: int = PROBE_MAX_WORDS,
    batch_size: int = 512,
) -> Tensor:
    """sentences (N,) -> features (N, D): z (encoder), c after the one sentence (context), or [z, c] (both).
    ``layer="words"``: the mean over words of the word embeddings (the ``embeddings`` baseline)."""
    if layer not in (*LAYERS, "words"):
        raise ValueError(f"layer={layer!r}: expected one of {LAYERS}")
    model.eval()
    tokenizer: HashedNgrams = model.encoder.tokenizer
    rows = []
    for start in range(0, len(sentences), batch_size):
        ids = torch.from_numpy(tokenizer.encode(sentences[start : start + batch_size], max_words))  # (B, L, G)
        if layer == "words":
            embedded = model.encoder.embed_words(ids)  # (B, L, E)
            present = (ids[..., 0] != 0).unsqueeze(-1).to(embedded.dtype)  # (B, L, 1)
            rows.append((embedded * present).sum(1) / present.sum(1).clamp(min=1))  # (B, E)
            continue
        latents, _ = model.encoder(ids.unsqueeze(1))  # (B, 1, C): each sentence a sequence of one
        parts = []
        if layer in ("encoder", "both"):
            parts.append(latents[:, 0])  # (B, C)
        if layer in ("context", "both"):
            context, _ = model.context(latents)  # (B, 1, H)
            parts.append(context[:, 0])  # (B, H)
        rows.append(torch.cat(parts, dim=1))
    return torch.cat(rows).float()


class PairVectorizer:
    """bow / tfidf of sentence pairs: [v(A), v(B), v(A) * v(B)] (the product: the words they share), fitted on A and B together."""

    def __init__(self, vectoriser) -> None:
        self.vectoriser = vectoriser

    def get_params(self, deep: bool = True) -> dict:
        return {"vectoriser": self.vectoriser}

    def set_params(self, **params):
        self.vectoriser = params.get("vectoriser", self.vectoriser)
        return self

    def fit(self, pairs, labels=None):
        self.vectoriser.fit([text for pair in pairs for text in pair])
        return self

    def transform(self, pairs):
        from scipy.sparse import hstack

        a, b = (
            self.vectoriser.transform([pair[0] for pair in pairs]),
            self.vectoriser.transform([pair[1] for pair in pairs]),
        )
        return hstack([a, b, a.multiply(b)]).tocsr()

    def fit_transform(self, pairs, labels=None):
        return self.fit(pairs).transform(pairs)


def _classifier(
    sparse: str | None, seed: int, vocabulary: int | None = None, pair: bool = False, classes: int = 2, grid=C_GRID
):
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    inner = StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=seed)

    # The inner cross-validation sees only the outer training fold; refit=True then fits the best C on all of it.
    def select(model):
        return GridSearchCV(model, {"C": list(grid)}, cv=inner, scoring="accuracy", refit=True)

    if sparse is None:
        return make_pipeline(StandardScaler(), select(LogisticRegression(max_iter=2000)))
    vectoriser = (
        TfidfVectorizer(
            ngram_range=(1, 2),
            tokenizer=words,
            lowercase=False,
            token_pattern=None,
            sublinear_tf=True,
            max_features=vocabulary,
        )
        if sparse == "tfidf"
        else CountVectorizer(binary=True, tokenizer=words, lowercase=False, token_pattern=None, max_features=vocabulary)
    )
    solver = "liblinear" if classes == 2 else "lbfgs"  # liblinear is binary only (one-vs-rest is not softmax)
    return make_pipeline(
        PairVectorizer(vectoriser) if pair else vectoriser, select(LogisticRegression(solver=solver, max_iter=2000))
    )


def cross_validate(
    features,
    labels: np.ndarray,
    *,
    sparse: str | None = None,
    seed: int = 0,
    folds: int = FOLDS,
    vocabulary: int | None = None,
    pair: bool = False,
    grid=C_GRID,
) -> dict:
    """features (N, D) array (or N texts, N (A, B) pairs with ``pair``, when ``sparse`` is "bow" / "tfidf"), labels (N,) -> accuracy
    and std (percent) over ``folds`` stratified folds, C chosen inside each training fold. ``vocabulary``: bow / tfidf
    keep only the N most frequent terms of the training fold (a bag of words of a given dimension)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold

    outer = StratifiedKFold(folds, shuffle=True, random_state=seed)
    accuracies, chosen = [], []
    if sparse:
        data = np.empty(len(features), dtype=object)  # one object per example, a pair stays a tuple
        data[:] = list(features)
    else:
        data = np.asarray(features, dtype=np.float64)
    for train_index, test_index in outer.split(np.zeros(len(labels)), labels):
        with (
            warnings.catch_warnings()
        ):  # lbfgs at the grid's weakest L2 (C = 1000) may stop at max_iter; that C is then rarely chosen
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier = _classifier(sparse, seed, vocabulary, pair, len(np.unique(labels)), grid).fit(
                list(data[train_index]) if pair else data[train_index], labels[train_index]
            )
        accuracies.append(
            100.0
            * float(
                (classifier.predict(list(data[test_index]) if pair else data[test_index]) == labels[test_index]).mean()
            )
        )
        chosen.append(float(classifier[-1].best_params_["C"]))
    return {
        "accuracy": float(np.mean(accuracies)),
        "std": float(np.std(accuracies)),
        "fold_accuracies": [round(a, 2) for a in accuracies],
        "chosen_C": chosen,
    }


def oov_rates(root: str | Path, texts: list[str], tokenizer: HashedNgrams | None = None) -> dict:
    """Out-of-vocabulary rates of ``texts`` against the training sentences of ``root``, in percent of
    word tokens: ``words``, whose word never occurs in the training text; ``ngrams``, of all hashed
    n-gram ids of the probe's words, those no training word has (the encoder's embedding rows
    that training never updates); ``words_all_ngrams_unseen``, words none of whose n-grams was seen."""
    tokenizer = tokenizer or HashedNgrams()
    training_words = {
        word for _, _, sentences in read_documents(root) for sentence in sentences for word in words(sentence)
    }
    seen = {i for word in training_words for i in tokenizer.ngram_ids(word)}
    tokens = [word for text in texts for word in words(text)]
    cache: dict[str, list[int]] = {}
    ids = [cache.setdefault(word, tokenizer.ngram_ids(word)) for word in tokens]
    flat = [i for word_ids in ids for i in word_ids]
    return {
        "words": round(100.0 * sum(word not in training_words for word in tokens) / max(len(tokens), 1), 2),
        "ngrams": round(100.0 * sum(i not in seen for i in flat) / max(len(flat), 1), 2),
        "words_all_ngrams_unseen": round(
            100.0 * sum(all(i not in seen for i in word_ids) for word_ids in ids) / max(len(ids), 1), 2
        ),
        "probe_tokens": len(tokens),
        "training_word_types": len(training_words),
    }


def _model(features: str, architecture: str | None, seed: int) -> nn.Module:
    from cpc.checkpoint import load
    from cpc.model import build_model
    from cpc.runtime import seeded

    if features in ("random", "embeddings"):
        if architecture is None:
            raise ValueError(
                f"--features {features} needs --architecture CHECKPOINT (the model whose architecture it copies)"
            )
        with seeded(seed):
            return build_model(load(architecture, needs="text", what="cpc probe text").config)
    return load(features, needs="text", what="cpc probe text")


def task_features(model: nn.Module, task: Task, layer: str) -> Tensor:
    """Dense features (N, D) of a task's examples: sentences, pairs, or (political) speeches as the mean of their sentences."""
    if task.pair:
        return pair_features(model, task.texts, layer=layer)
    if task.name == "political":  # a speech: the mean of its sentences' features
        return torch.stack(
            [sentence_features(model, split_sentences(text), layer=layer).mean(0) for text in task.texts]
        )
    return sentence_features(model, task.texts, layer=layer)


def text_probe(
    features: str,
    *,
    task: str | Task = "mr",
    layer: str = "encoder",
    architecture: str | None = None,
    root: str = DEFAULT_ROOT,
    seed: int = 0,
    threads: int | None = 1,
    limit: int | None = None,
    folds: int = FOLDS,
    vocabulary: int | None = None,
    model: nn.Module | None = None,
    grid=C_GRID,
) -> dict:
    """One row of the text table: ``features`` is a checkpoint path or one of BASELINES; ``task`` mr, political, a .tsv file or a Task.

    ``architecture``: the checkpoint whose model ``random`` and ``embeddings`` copy. ``limit``:
    only the first N examples (a quick look, not the protocol). ``vocabulary``: bow / tfidf over the N most frequent terms.
    ``model``: the model already loaded for ``features`` (the suite loads each once). ``grid``: the C values tried inside each fold."""
    from threadpoolctl import threadpool_limits

    from cpc.runtime import torch_threads

    started = time.perf_counter()
    if features not in BASELINES and not Path(features).is_file():
        raise FileNotFoundError(f"--features {features}: no such checkpoint (or one of {', '.join(BASELINES)})")
    task = load_task(task, root)
    if limit:
        task = Task(task.name, task.texts[:limit], task.labels[:limit], task.classes, task.pair)
    check_task(task, folds)
    result = {
        "task": task.name,
        "features": features,
        "layer": layer if features not in ("tfidf", "bow", "embeddings") else None,
        "examples": len(task.texts),
        "classes": task.class_counts(),
    }
    with torch_threads(threads), threadpool_limits(threads):
        if features in ("tfidf", "bow"):
            scores = cross_validate(
                task.texts,
                task.labels,
                sparse=features,
                seed=seed,
                folds=folds,
                vocabulary=vocabulary,
                pair=task.pair,
                grid=grid,
            )
            dimensions = vocabulary
        else:
            model = model or _model(features, architecture, seed)
            x = task_features(model, task, "words" if features == "embeddings" else layer)
            scores = cross_validate(x.numpy(), task.labels, seed=seed, folds=folds, grid=grid)
            dimensions = int(x.shape[1])
    result.update(scores, dimensions=dimensions, seconds=round(time.perf_counter() - started, 1))
    log.info(
        "text probe %s (%s, %s): %.2f +- %.2f %%",
        features,
        task.name,
        result["layer"],
        result["accuracy"],
        result["std"],
    )
    return result


# ----------------------------------------------------------------------------- CLI


def register_probe(kinds: argparse._SubParsersAction) -> None:
    """``cpc probe text`` (called by cpc.speech.evaluate, which owns ``cpc probe``)."""
    parser = kinds.add_parser(
        "text",
        help="accuracy of logistic regression on frozen sentence features for a labelled task (10-fold CV)",
        description=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--features", required=True, help=f"a CPC checkpoint, or one of {', '.join(BASELINES)}")
    parser.add_argument("--architecture", help="checkpoint whose architecture random/embeddings copy")
    parser.add_argument(
        "--task",
        default="mr",
        help="mr (movie-review sentiment), political (convention speeches), or FILE.tsv: "
        "label<TAB>sentence lines (or label<TAB>sentence A<TAB>sentence B), any number of classes",
    )
    parser.add_argument(
        "--layer", choices=LAYERS, default="encoder", help="sentence latent z (encoder), context c, or both"
    )
    parser.add_argument("--data", default=DEFAULT_ROOT, help="folder of `cpc data text`")
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds and of random features")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    parser.add_argument(
        "--max-examples", type=int, help="use only the first N examples (a quick look, not the protocol)"
    )
    parser.add_argument(
        "--folds", type=int, default=FOLDS, help=f"outer cross-validation folds (the protocol: {FOLDS})"
    )
    parser.add_argument(
        "--vocabulary",
        type=int,
        help="bow / tfidf: only the N most frequent terms of each training fold (a bag of words of dimension N)",
    )
    parser.add_argument(
        "--oov",
        action="store_true",
        help="also measure the probe text's out-of-vocabulary rates against the training text",
    )
    parser.add_argument("--json", help="write the result here")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if args.json:  # before the work: never onto the checkpoint it reads
        from cpc.safe_io import refuse_input_as_output

        refuse_input_as_output(
            "--json", args.json, [path for path in (args.features, args.architecture) if path and Path(path).is_file()]
        )
    result = text_probe(
        args.features,
        task=args.task,
        layer=args.layer,
        architecture=args.architecture,
        root=args.data,
        seed=args.seed,
        threads=args.threads,
        limit=args.max_examples,
        vocabulary=args.vocabulary,
        folds=args.folds,
    )
    if args.oov:
        tokenizer = (
            _model(args.features, args.architecture, args.seed).encoder.tokenizer if result["dimensions"] else None
        )
        task = load_task(args.task, args.data)
        texts = [text for example in task.texts for text in (example if task.pair else (example,))]
        result["oov"] = oov_rates(args.data, texts[: args.max_examples], tokenizer)
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        from cpc.safe_io import write_atomic

        write_atomic(args.json, text + "\n")  # never through a link planted there
    print(text)
    return 0
