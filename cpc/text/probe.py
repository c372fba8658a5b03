"""``cpc probe text``: sentiment (or party) from frozen sentence features, SentEval's protocol.

    cpc probe text --features CHECKPOINT|tfidf|bow|random|embeddings --task mr [--layer encoder] --json OUT

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
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from cpc.text.corpus import DEFAULT_ROOT, read_documents, read_probe_set, split_sentences
from cpc.text.tokenizer import HashedNgrams, words

log = logging.getLogger(__name__)

__all__ = ["BASELINES", "C_GRID", "LAYERS", "cross_validate", "oov_rates", "sentence_features", "text_probe"]

BASELINES = ("tfidf", "bow", "random", "embeddings")
LAYERS = ("encoder", "context", "both")
TASKS = ("mr", "political")
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # inverse L2 weights tried inside each training fold
FOLDS, INNER_FOLDS = 10, 5
PROBE_MAX_WORDS = 64  # words kept per probe sentence (MR snippets: 21 on average)


@torch.inference_mode()
def sentence_features(model: nn.Module, sentences: list[str], *, layer: str = "encoder", max_words: int = PROBE_MAX_WORDS,
                      batch_size: int = 512) -> Tensor:
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


def _classifier(sparse: str | None, seed: int, vocabulary: int | None = None):
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    inner = StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=seed)
    # The inner cross-validation sees only the outer training fold; refit=True then fits the best C on all of it.
    def select(model):
        return GridSearchCV(model, {"C": list(C_GRID)}, cv=inner, scoring="accuracy", refit=True)

    if sparse is None:
        return make_pipeline(StandardScaler(), select(LogisticRegression(max_iter=2000)))
    vectoriser = (TfidfVectorizer(ngram_range=(1, 2), tokenizer=words, lowercase=False, token_pattern=None, sublinear_tf=True, max_features=vocabulary)
                  if sparse == "tfidf" else CountVectorizer(binary=True, tokenizer=words, lowercase=False, token_pattern=None, max_features=vocabulary))
    return make_pipeline(vectoriser, select(LogisticRegression(solver="liblinear", max_iter=2000)))


def cross_validate(features, labels: np.ndarray, *, sparse: str | None = None, seed: int = 0, folds: int = FOLDS, vocabulary: int | None = None) -> dict:
    """features (N, D) array (or N texts when ``sparse`` is "bow" / "tfidf"), labels (N,) -> accuracy and std
    (percent) over ``folds`` stratified folds, C chosen inside each training fold. ``vocabulary``: bow / tfidf
    keep only the N most frequent terms of the training fold (a bag of words of a given dimension)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold

    outer = StratifiedKFold(folds, shuffle=True, random_state=seed)
    accuracies, chosen = [], []
    data = np.asarray(features, dtype=object) if sparse else np.asarray(features, dtype=np.float64)
    for train_index, test_index in outer.split(np.zeros(len(labels)), labels):
        with warnings.catch_warnings():  # lbfgs at the grid's weakest L2 (C = 1000) may stop at max_iter; that C is then rarely chosen
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier = _classifier(sparse, seed, vocabulary).fit(data[train_index], labels[train_index])
        accuracies.append(100.0 * float((classifier.predict(data[test_index]) == labels[test_index]).mean()))
        chosen.append(float(classifier[-1].best_params_["C"]))
    return {"accuracy": float(np.mean(accuracies)), "std": float(np.std(accuracies)), "fold_accuracies": [round(a, 2) for a in accuracies],
            "chosen_C": chosen}


def oov_rates(root: str | Path, texts: list[str], tokenizer: HashedNgrams | None = None) -> dict:
    """Out-of-vocabulary rates of ``texts`` against the training sentences of ``root``, in percent of
    word tokens: ``words``, whose word never occurs in the training text; ``ngrams``, of all hashed
    n-gram ids of the probe's words, those no training word has (the encoder's embedding rows
    that training never updates); ``words_all_ngrams_unseen``, words none of whose n-grams was seen."""
    tokenizer = tokenizer or HashedNgrams()
    training_words = {word for _, _, sentences in read_documents(root) for sentence in sentences for word in words(sentence)}
    seen = {i for word in training_words for i in tokenizer.ngram_ids(word)}
    tokens = [word for text in texts for word in words(text)]
    cache: dict[str, list[int]] = {}
    ids = [cache.setdefault(word, tokenizer.ngram_ids(word)) for word in tokens]
    flat = [i for word_ids in ids for i in word_ids]
    return {
        "words": round(100.0 * sum(word not in training_words for word in tokens) / max(len(tokens), 1), 2),
        "ngrams": round(100.0 * sum(i not in seen for i in flat) / max(len(flat), 1), 2),
        "words_all_ngrams_unseen": round(100.0 * sum(all(i not in seen for i in word_ids) for word_ids in ids) / max(len(ids), 1), 2),
        "probe_tokens": len(tokens), "training_word_types": len(training_words),
    }


def _model(features: str, architecture: str | None, seed: int) -> nn.Module:
    from cpc.checkpoint import load
    from cpc.features import seeded
    from cpc.model import build_model

    if features in ("random", "embeddings"):
        if architecture is None:
            raise ValueError(f"--features {features} needs --architecture CHECKPOINT (the model whose architecture it copies)")
        with seeded(seed):
            return build_model(load(architecture, needs="text", what="cpc probe text").config)
    return load(features, needs="text", what="cpc probe text")


def text_probe(features: str, *, task: str = "mr", layer: str = "encoder", architecture: str | None = None, root: str = DEFAULT_ROOT,
               seed: int = 0, threads: int | None = 1, limit: int | None = None, folds: int = FOLDS, vocabulary: int | None = None) -> dict:
    """One row of the text table: ``features`` is a checkpoint path or one of BASELINES.

    ``architecture``: the checkpoint whose model ``random`` and ``embeddings`` copy. ``limit``:
    only the first N examples (a quick look, not the protocol). ``vocabulary``: bow / tfidf over the N most frequent terms."""
    from threadpoolctl import threadpool_limits

    from cpc.features import torch_threads

    started = time.perf_counter()
    if task not in TASKS:
        raise ValueError(f"--task {task!r}: expected one of {TASKS}")
    if features not in BASELINES and not Path(features).is_file():
        raise FileNotFoundError(f"--features {features}: no such checkpoint (or one of {', '.join(BASELINES)})")
    texts, labels = read_probe_set(root, task)
    if limit:
        texts, labels = texts[:limit], labels[:limit]
    texts, labels = check_probe_set(texts, labels, folds=folds, source=f"{root}/{task}.tsv")
    result = {"task": task, "features": features, "layer": layer if features not in ("tfidf", "bow", "embeddings") else None, "examples": len(texts)}
    with torch_threads(threads), threadpool_limits(threads):
        if features in ("tfidf", "bow"):
            scores = cross_validate(texts, labels, sparse=features, seed=seed, folds=folds, vocabulary=vocabulary)
            dimensions = vocabulary
        else:
            model = _model(features, architecture, seed)
            kind = "words" if features == "embeddings" else layer
            if task == "political":  # a speech: the mean of its sentences' features
                x = torch.stack([sentence_features(model, split_sentences(text), layer=kind).mean(0) for text in texts])
            else:
                x = sentence_features(model, texts, layer=kind)
            scores = cross_validate(x.numpy(), labels, seed=seed, folds=folds)
            dimensions = int(x.shape[1])
    result.update(scores, dimensions=dimensions, seconds=round(time.perf_counter() - started, 1))
    log.info("text probe %s (%s, %s): %.2f +- %.2f %%", features, task, result["layer"], result["accuracy"], result["std"])
    return result


def check_probe_set(texts: list[str], labels: np.ndarray, *, folds: int, source: str) -> tuple[list[str], np.ndarray]:
    """Drop empty examples (warned, counted) and refuse, naming the option or the class, a set the
    nested cross-validation cannot split: fewer than 2 folds, one class, a class too small."""
    if folds < 2:
        raise ValueError(f"--folds {folds}: expected 2 or more (the protocol: {FOLDS})")
    keep = [index for index, text in enumerate(texts) if text.strip()]
    if len(keep) < len(texts):
        log.warning("%s: skipping %d empty example(s) of %d", source, len(texts) - len(keep), len(texts))
        texts, labels = [texts[index] for index in keep], labels[keep]
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"{source}: {len(texts)} example(s), {'all of class ' + str(classes[0]) if len(classes) else 'none'}: a probe needs two classes")
    smallest = int(counts.min())
    if smallest - -(-smallest // folds) < INNER_FOLDS:  # a training fold's share of the smallest class, split again INNER_FOLDS ways
        raise ValueError(
            f"{source}: class {classes[counts.argmin()]} has {smallest} example(s), too few for --folds {folds} with "
            f"{INNER_FOLDS} inner folds (needs about {INNER_FOLDS * folds // (folds - 1) + 1}); use more data or fewer --folds"
        )
    return texts, labels


# ----------------------------------------------------------------------------- CLI


def register_probe(kinds: argparse._SubParsersAction) -> None:
    """``cpc probe text`` (called by cpc.eval.cli, which owns ``cpc probe``)."""
    parser = kinds.add_parser("text", help="MR-like sentiment accuracy of logistic regression on frozen sentence features (10-fold CV)",
                              description=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", required=True, help=f"a CPC checkpoint, or one of {', '.join(BASELINES)}")
    parser.add_argument("--architecture", help="checkpoint whose architecture random/embeddings copy")
    parser.add_argument("--task", choices=TASKS, default="mr", help="mr (movie-review sentiment) or political (convention speeches)")
    parser.add_argument("--layer", choices=LAYERS, default="encoder", help="sentence latent z (encoder), context c, or both")
    parser.add_argument("--data", default=DEFAULT_ROOT, help="folder of `cpc data text`")
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds and of random features")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    parser.add_argument("--max-examples", type=int, help="use only the first N examples (a quick look, not the protocol)")
    parser.add_argument("--folds", type=int, default=FOLDS, help=f"outer cross-validation folds (the protocol: {FOLDS})")
    parser.add_argument("--vocabulary", type=int, help="bow / tfidf: only the N most frequent terms of each training fold (a bag of words of dimension N)")
    parser.add_argument("--oov", action="store_true", help="also measure the probe text's out-of-vocabulary rates against the training text")
    parser.add_argument("--json", help="write the result here")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if args.json:  # before the work: never onto the checkpoint it reads
        from cpc.safe_io import refuse_input_as_output

        refuse_input_as_output("--json", args.json, [path for path in (args.features, args.architecture) if path and Path(path).is_file()])
    result = text_probe(args.features, task=args.task, layer=args.layer, architecture=args.architecture, root=args.data, seed=args.seed,
                        threads=args.threads, limit=args.max_examples, vocabulary=args.vocabulary, folds=args.folds)
    if args.oov:
        tokenizer = _model(args.features, args.architecture, args.seed).encoder.tokenizer if result["dimensions"] else None
        result["oov"] = oov_rates(args.data, read_probe_set(args.data, args.task)[0][: args.max_examples], tokenizer)
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        from cpc.safe_io import write_atomic

        write_atomic(args.json, text + "\n")  # never through a link planted there
    print(text)
    return 0
