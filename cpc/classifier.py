"""Classifiers on frozen features, shared by every probe (speech phones and speakers, image
classes, text sentiment): standardise the inputs, train a linear (or one-hidden-layer)
classifier with seeded minibatch Adam and a cosine schedule, score its accuracy.

Shape legend: N examples, D feature dimensions, C classes.

Everything is seeded from ``ProbeSettings.seed`` (the initialisation inside
:func:`cpc.runtime.seeded`, the shuffling from a local generator), so the caller's global
random stream is left alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cpc.runtime import seeded, torch_threads

__all__ = ["ProbeSettings", "accuracy", "classifier", "cosine_schedule", "standardiser", "train_classifier"]


@dataclass(frozen=True)
class ProbeSettings:
    """Optimisation of a probe. ``hidden_layers`` 0 = linear, 1 = one ReLU hidden layer of ``hidden_size``.

    ``threads``: torch intra-op threads while training (None: leave the caller's setting).
    Change a field with ``dataclasses.replace(settings, threads=1)``.
    """

    hidden_layers: int = 0
    hidden_size: int = 512
    epochs: int = 20
    batch_size: int = 4096
    learning_rate: float = 2e-3
    min_steps: int = 300  # small corpora still get this many optimizer steps
    seed: int = 0
    threads: int | None = None


def standardiser(train: Tensor) -> tuple[Tensor, Tensor]:
    """Per-dimension mean and std of training rows (N, D) -> (D,), (D,); constant dimensions get std 1."""
    mean = train.mean(0)
    std = train.std(0)
    return mean, torch.where(std > 1e-8, std, torch.ones_like(std))


def classifier(input_size: int, num_classes: int, settings: ProbeSettings) -> nn.Module:
    if settings.hidden_layers == 0:
        return nn.Linear(input_size, num_classes)
    if settings.hidden_layers != 1:
        raise ValueError(f"hidden_layers={settings.hidden_layers}: expected 0 (linear) or 1")
    return nn.Sequential(
        nn.Linear(input_size, settings.hidden_size), nn.ReLU(), nn.Linear(settings.hidden_size, num_classes)
    )


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )


def train_classifier(inputs: Tensor, targets: Tensor, num_classes: int, settings: ProbeSettings) -> nn.Module:
    """Minibatch Adam on standardised inputs (N, D), targets (N,) -> classifier (input already standardised)."""
    with torch_threads(settings.threads):
        return _fit(inputs, targets, num_classes, settings)


def _fit(inputs: Tensor, targets: Tensor, num_classes: int, settings: ProbeSettings) -> nn.Module:
    with seeded(settings.seed):
        model = classifier(inputs.shape[1], num_classes, settings)
    generator = torch.Generator().manual_seed(settings.seed)
    batch_size = min(settings.batch_size, len(inputs))
    batches_per_epoch = math.ceil(len(inputs) / batch_size)
    epochs = max(settings.epochs, math.ceil(settings.min_steps / batches_per_epoch))
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    scheduler = cosine_schedule(optimizer, epochs * batches_per_epoch)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(inputs), generator=generator)
        for start in range(0, len(inputs), batch_size):
            index = order[start : start + batch_size]
            loss = nn.functional.cross_entropy(model(inputs[index]), targets[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    return model.eval()


def accuracy(model: nn.Module, inputs: Tensor, targets: Tensor) -> float:
    with torch.inference_mode():
        predictions = torch.cat(
            [model(inputs[start : start + 65536]).argmax(1) for start in range(0, len(inputs), 65536)]
        )
    return 100.0 * (predictions == targets).float().mean().item()
