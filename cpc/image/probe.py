"""``cpc probe image``: linear classification of frozen image features on Fashion-MNIST.

    cpc probe image --features CHECKPOINT|pixels|random|supervised --labels 1000 [--layer both] --json OUT

Protocol (the paper's section 3.2, linear evaluation on frozen features):

* Features: the CPC model's encoder latents z and context c, each mean-pooled over the 7 x 7
  patch grid (``--layer encoder``: z, ``context``: c, ``both``: [z, c] concatenated, the default),
  computed on un-augmented patches. Baselines: ``pixels`` (the 784 pixels), ``random`` (a
  freshly initialised model of the checkpoint's architecture: what the architecture alone
  gives) and ``supervised`` (the same encoder and context + pooled [z, c] + a linear layer trained end to end
  with labels on the same labelled images: an upper bound; its own test accuracy is reported).
* Classifier: multinomial logistic regression (one linear layer, Adam, cosine schedule) on
  standardised features, trained on ``--labels`` training images (a seeded subset, the same
  for every feature set; 60000 = all) and scored on the 10,000 test images.

The JSON (like ``cpc probe phone``): ``accuracy`` in percent, plus ``labels``, ``features``,
``layer``, ``dimensions`` and ``seconds``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from cpc.classifier import ProbeSettings, accuracy, standardiser, train_classifier
from cpc.image.data import DEFAULT_ROOT, load_fashion_mnist
from cpc.image.source import FashionMNISTConfig, image_patches
from cpc.runtime import seeded, torch_threads

log = logging.getLogger(__name__)

BASELINES = ("pixels", "random", "supervised")
LAYERS = ("both", "encoder", "context")
LABEL_BUDGETS = (1000, 10000, 60000)
SUPERVISED_STEPS = 600  # Adam steps of 64 labelled images for the supervised row (~6 CPU-minutes)
IMAGE_SETTINGS = ProbeSettings(epochs=30, batch_size=1024, learning_rate=2e-3, min_steps=600)


def labelled_subset(labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Indices of ``count`` training images, a seeded permutation's prefix (all of them when count >= N)."""
    if count <= 0:
        raise ValueError(f"--labels must be at least 1, got {count}")
    order = np.random.default_rng(seed).permutation(len(labels))
    return np.sort(order[: min(count, len(labels))])


@torch.inference_mode()
def pooled_features(
    model: nn.Module, images: np.ndarray, data: FashionMNISTConfig, *, layer: str = "both", batch_size: int = 500
) -> Tensor:
    """uint8 images (N, 28, 28) -> features (N, D): z and/or c mean-pooled over the patch grid."""
    if layer not in LAYERS:
        raise ValueError(f"layer={layer!r}: expected one of {LAYERS}")
    model.eval()
    rows = []
    for start in range(0, len(images), batch_size):
        patches = image_patches(images[start : start + batch_size], data)  # (B, G, G, P, P)
        latents, _ = model.encoder(patches)  # (B, G, G, C)
        pooled = []
        if layer in ("both", "encoder"):
            pooled.append(latents.mean(dim=(1, 2)))  # (B, C)
        if layer in ("both", "context"):
            context, _ = model.context(latents)  # (B, G, G, H)
            pooled.append(context.mean(dim=(1, 2)))  # (B, H)
        rows.append(torch.cat(pooled, dim=1))
    return torch.cat(rows).float()


def linear_probe(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, settings: ProbeSettings = IMAGE_SETTINGS
) -> float:
    """Test accuracy (percent) of a linear classifier trained on standardised features."""
    mean, std = standardiser(train_x)
    classifier = train_classifier((train_x - mean) / std, train_y, 10, settings)
    return accuracy(classifier, (test_x - mean) / std, test_y)


class SupervisedNetwork(nn.Module):
    """The CPC model's encoder and context network with the probe's head on top:
    patches -> [z, c] mean-pooled over the grid -> 10 logits (the features the probe reads)."""

    def __init__(self, encoder: nn.Module, context: nn.Module) -> None:
        super().__init__()
        self.encoder, self.context = encoder, context
        self.head = nn.Linear(encoder.output_size + context.output_size, 10)

    def forward(self, patches: Tensor) -> Tensor:
        latents, _ = self.encoder(patches)  # (B, G, G, C)
        context, _ = self.context(latents)  # (B, G, G, H)
        return self.head(torch.cat([latents.mean(dim=(1, 2)), context.mean(dim=(1, 2))], dim=1))  # (B, 10)


def supervisedaccuracy(
    model: nn.Module,
    data: FashionMNISTConfig,
    train_images,
    train_labels,
    test_images,
    test_labels,
    *,
    steps: int = SUPERVISED_STEPS,
    batch_size: int = 64,
    seed: int = 0,
) -> float:
    """Train ``model``'s encoder architecture (fresh weights) + a linear head on the labelled images; -> test accuracy (percent)."""
    from cpc.model import build_model

    with seeded(seed):
        fresh = build_model(model.config)
        network = SupervisedNetwork(fresh.encoder, fresh.context)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + np.cos(np.pi * step / steps)))
    generator = torch.Generator().manual_seed(seed)
    targets = torch.from_numpy(train_labels)
    network.train()
    for _ in range(steps):
        index = torch.randint(len(train_images), (min(batch_size, len(train_images)),), generator=generator)
        loss = nn.functional.cross_entropy(network(image_patches(train_images[index.numpy()], data)), targets[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    network.eval()
    with torch.inference_mode():
        predictions = torch.cat(
            [network(image_patches(test_images[i : i + 500], data)).argmax(1) for i in range(0, len(test_images), 500)]
        )
    return 100.0 * (predictions == torch.from_numpy(test_labels)).float().mean().item()


def checkpoint_grid(checkpoint: str | Path, root: str = DEFAULT_ROOT) -> FashionMNISTConfig:
    """The data settings a probe of ``checkpoint`` reads with: the images in ``root``, cut into the
    checkpoint's patch grid (padded size, patch size, stride), without augmentation."""
    from cpc.checkpoint import load_checkpoint, require_modality

    config = load_checkpoint(checkpoint)["config"]
    require_modality(config, "fashion_mnist", "cpc probe image", checkpoint)
    saved = config.get("data", {})
    grid = {key: saved[key] for key in ("padded_size", "patch_size", "patch_stride") if key in saved}
    return dataclasses.replace(FashionMNISTConfig(root=root), **grid)


def label_budget_accuracies(
    checkpoint: str | Path,
    budgets,
    *,
    root: str = DEFAULT_ROOT,
    seed: int = 0,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> dict[int, float]:
    """Test accuracy (percent) of the linear probe on pooled [z, c], per label budget: the numbers of
    ``image_probe(checkpoint, labels=n)`` for each n, at a fraction of the cost. The seeded subsets
    are prefixes of one permutation, so every budget's images lie in the largest budget's: only
    those and the test images are pooled (20,000 images at 10k labels, not 70,000)."""
    from cpc.checkpoint import load

    model, data = load(checkpoint), checkpoint_grid(checkpoint, root)
    train_images, train_labels = load_fashion_mnist(root, "train", limit=limit_train)
    test_images, test_labels = load_fashion_mnist(root, "test", limit=limit_test)
    pooled = labelled_subset(train_labels, max(budgets), seed)  # sorted image indices
    train_x = pooled_features(model, train_images[pooled], data)  # (L, D), L = the largest budget
    test_x = pooled_features(model, test_images, data)  # (N_test, D)
    settings = dataclasses.replace(IMAGE_SETTINGS, seed=seed)
    accuracies = {}
    for count in sorted(budgets):
        subset = labelled_subset(train_labels, count, seed)
        rows = torch.from_numpy(np.searchsorted(pooled, subset))  # the subset's rows of train_x
        accuracies[len(subset)] = linear_probe(
            train_x[rows], torch.from_numpy(train_labels[subset]), test_x, torch.from_numpy(test_labels), settings
        )
    return accuracies


def image_probe(
    features: str,
    *,
    labels: int = 10000,
    layer: str = "both",
    architecture: str | None = None,
    root: str = DEFAULT_ROOT,
    seed: int = 0,
    threads: int | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
    supervised_steps: int = SUPERVISED_STEPS,
    cache: dict | None = None,
) -> dict:
    """One row of the image table: ``features`` is a checkpoint path or one of BASELINES.

    ``architecture``: the checkpoint whose model ``random`` and ``supervised`` copy (required
    for them). ``cache``: a dict reused across calls to keep pooled features of the same set.
    ``limit_train`` / ``limit_test``: only the first N images of each split (quick looks, tests).
    """
    started = time.perf_counter()
    source = _model_to_copy(features, architecture)
    data = FashionMNISTConfig(root=root) if source is None else checkpoint_grid(source, root)
    train_images, train_labels = load_fashion_mnist(root, "train", limit=limit_train)
    test_images, test_labels = load_fashion_mnist(root, "test", limit=limit_test)
    subset = labelled_subset(train_labels, labels, seed)
    result = {
        "task": "image",
        "features": features,
        "labels": len(subset),
        "layer": layer if features not in ("pixels", "supervised") else None,
    }
    with torch_threads(threads):
        if features == "supervised":
            labelled = (train_images[subset], train_labels[subset])
            result.update(_supervised_row(source, data, labelled, (test_images, test_labels), supervised_steps, seed))
        else:
            train_x, test_x = _frozen_features(features, source, data, (train_images, test_images), layer, seed, cache)
            settings = dataclasses.replace(IMAGE_SETTINGS, seed=seed)
            accuracy = linear_probe(
                train_x[subset], torch.from_numpy(train_labels[subset]), test_x, torch.from_numpy(test_labels), settings
            )
            result.update(accuracy=accuracy, dimensions=int(train_x.shape[1]))
    result["test_images"] = len(test_labels)
    result["seconds"] = round(time.perf_counter() - started, 1)
    log.info("image probe %s (%s, %d labels): %.2f %%", features, result["layer"], len(subset), result["accuracy"])
    return result


def _model_to_copy(features: str, architecture: str | None) -> str | None:
    """The checkpoint whose model the features come from (None for pixels); a missing one raises."""
    if features not in BASELINES and not Path(features).is_file():
        raise FileNotFoundError(f"--features {features}: no such checkpoint (or one of {', '.join(BASELINES)})")
    source = None if features == "pixels" else architecture if features in ("random", "supervised") else features
    if features in ("random", "supervised") and source is None:
        raise ValueError(
            f"--features {features} needs --architecture CHECKPOINT (the model whose architecture it copies)"
        )
    return source


def _supervised_row(source: str, data: FashionMNISTConfig, labelled, test, steps: int, seed: int) -> dict:
    """The supervised upper bound: ``source``'s architecture trained end to end on the
    ``labelled`` (images, labels), scored on the ``test`` (images, labels)."""
    from cpc.checkpoint import load

    model = load(source)
    accuracy = supervisedaccuracy(model, data, *labelled, *test, steps=steps, seed=seed)
    dimensions = model.encoder.output_size + model.context.output_size  # its head reads [z, c]
    return dict(accuracy=accuracy, dimensions=dimensions, supervised_steps=steps)


def _frozen_features(
    features: str,
    source: str | None,
    data: FashionMNISTConfig,
    images: tuple[np.ndarray, np.ndarray],
    layer: str,
    seed: int,
    cache: dict | None,
) -> tuple[Tensor, Tensor]:
    """(train, test) images -> their features of ``layer``, (N, D) and (N_test, D); with a ``cache``,
    each feature set is computed once."""
    key = features  # z and c are pooled once; the layer picks columns
    if cache is not None and key in cache:
        train_x, test_x, latent_size = cache[key]
    else:
        train_x, test_x, latent_size = _all_features(features, source, data, *images, seed)
        if cache is not None:
            cache[key] = (train_x, test_x, latent_size)
    if latent_size is not None and layer != "both":  # [z, c] columns
        columns = slice(0, latent_size) if layer == "encoder" else slice(latent_size, None)
        train_x, test_x = train_x[:, columns], test_x[:, columns]
    return train_x, test_x


def _all_features(
    features: str, source: str | None, data: FashionMNISTConfig, train_images, test_images, seed: int
) -> tuple[Tensor, Tensor, int | None]:
    """Pixels (with no latent size), or pooled [z, c] of the checkpoint or its random-init copy (with z's size)."""
    from cpc.checkpoint import load

    if features == "pixels":
        train_x = torch.from_numpy(train_images.reshape(len(train_images), -1)).float() / 255
        test_x = torch.from_numpy(test_images.reshape(len(test_images), -1)).float() / 255
        return train_x, test_x, None
    if features == "random":
        from cpc.model import build_model

        with seeded(seed):
            model = build_model(load(source).config)
    else:
        model = load(features)
    train_x, test_x = pooled_features(model, train_images, data), pooled_features(model, test_images, data)
    return train_x, test_x, model.encoder.output_size


# ----------------------------------------------------------------------------- CLI


def register_probe(kinds: argparse._SubParsersAction) -> None:
    """``cpc probe image`` (called by cpc.speech.evaluate, which owns ``cpc probe``)."""
    parser = kinds.add_parser(
        "image",
        help="Fashion-MNIST accuracy of a linear classifier on frozen, grid-pooled features",
        description=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--features", required=True, help=f"a CPC checkpoint, or one of {', '.join(BASELINES)}")
    parser.add_argument("--architecture", help="checkpoint whose architecture random/supervised copy")
    parser.add_argument(
        "--labels", type=int, default=10000, help="labelled training images (seeded subset; 60000 = all)"
    )
    parser.add_argument(
        "--layer", choices=LAYERS, default="both", help="pooled z (encoder), c (context) or both concatenated"
    )
    parser.add_argument("--data", default=DEFAULT_ROOT, help="folder of the Fashion-MNIST idx files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the labelled subset and the classifier")
    parser.add_argument("--threads", type=int, help="torch threads")
    parser.add_argument(
        "--supervised-steps", type=int, default=SUPERVISED_STEPS, help="training steps of --features supervised"
    )
    parser.add_argument(
        "--max-images",
        type=int,
        help="use only the first N training and N test images (a quick look, not the protocol)",
    )
    parser.add_argument("--json", help="write the result here")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from cpc.safe_io import refuse_input_as_output, write_atomic

    if args.json:  # before the work: never onto the checkpoint it reads
        refuse_input_as_output(
            "--json", args.json, [path for path in (args.features, args.architecture) if path and Path(path).is_file()]
        )
    result = image_probe(
        args.features,
        labels=args.labels,
        layer=args.layer,
        architecture=args.architecture,
        root=args.data,
        seed=args.seed,
        threads=args.threads,
        limit_train=args.max_images,
        limit_test=args.max_images,
        supervised_steps=args.supervised_steps,
    )
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(args.json, text + "\n")  # never through a link planted there
    print(text)
    return 0
