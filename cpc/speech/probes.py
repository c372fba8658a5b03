"""Probes on frozen features: frame phone classification, CTC phone recognition, speaker ID.

Shape legend: N frames (or crops), D feature dimensions, C classes, T frames of one utterance.

Protocols
---------
* Phone (CPC paper, section 3.1 and table 1): a linear softmax classifier on single 10 ms
  frames of frozen features, trained on the train split and scored by frame accuracy on the
  test split. ``hidden_layers=1`` adds one ReLU hidden layer (the paper's "non-linear"
  comparison). No context stacking, no label shift: every feature set sees the same frames.
* CTC (libri-light / CPC_audio "linear separability" with CTC): a per-frame linear (or
  one-hidden-layer) projection to C phones + 1 blank trained with CTC on each utterance's
  *collapsed* phone sequence (runs of one label merged, silence kept as a phone); greedy
  decoding (argmax, merge repeats, drop blanks); phone error rate = summed edit distance /
  summed reference length, in percent.
* Speaker (paper, section 3.1: "speaker classification ... on 1.28 s windows"): the
  features of each utterance are cut into non-overlapping crops of 128 frames, mean-pooled
  over time, and a linear classifier is trained on crops of train-split utterances and scored
  on crops of test-split utterances of the same speakers. Cropping the feature sequence
  (rather than re-running the model on each 1.28 s of audio) lets all probes share one
  extraction; the GRU then sees its usual left context.

Training (:mod:`cpc.classifier`, shared with the image and text probes): inputs are standardised with the training set's per-dimension mean and standard
deviation (so baselines with large raw scales, e.g. MFCC c0, train as well as CPC features);
minibatch Adam with a cosine-decayed learning rate on torch tensors, a fixed number of
epochs, everything seeded from ``ProbeSettings.seed`` (the initialisation inside
:func:`cpc.runtime.seeded`, the shuffling from a local generator, so the caller's global RNG
is left alone). ``ProbeSettings.threads`` limits torch's intra-op threads during training
(None, the default: the caller's setting). A 1-hour corpus (~300k training frames) takes
seconds per probe.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from cpc.classifier import ProbeSettings, accuracy, classifier, cosine_schedule, standardiser, train_classifier
from cpc.errors import FeatureError
from cpc.runtime import seeded, torch_threads
from cpc.speech.features import align_to_labels

__all__ = [
    "ProbeSettings",
    "PHONE_SETTINGS",
    "CTC_SETTINGS",
    "SPEAKER_SETTINGS",
    "frame_dataset",
    "phone_probe",
    "ctc_probe",
    "speaker_probe",
    "greedy_decode",
    "collapse",
    "edit_distance",
    "phone_error_rate",
]

log = logging.getLogger(__name__)

SPEAKER_CROP_FRAMES = 128  # 1.28 s, the paper's window


# Each probe's defaults, used when no settings are given.
PHONE_SETTINGS = ProbeSettings()
CTC_SETTINGS = ProbeSettings(epochs=40, learning_rate=5e-3, min_steps=400)
SPEAKER_SETTINGS = ProbeSettings(epochs=100, batch_size=1024, learning_rate=5e-3)


# ----------------------------------------------------------------------------- datasets


def frame_dataset(
    features: dict[str, np.ndarray], labels: dict[str, np.ndarray], utterances: Sequence[str], *, tolerance: int = 2
) -> tuple[Tensor, Tensor, int]:
    """Stack the frames of ``utterances``: -> X (N, D) float32, y (N,) int64, frames trimmed at ends.

    Raises :class:`FeatureError` naming an utterance without labels or features, or whose
    lengths differ by more than ``tolerance``.
    """
    inputs, targets, trimmed = [], [], 0
    for utterance in utterances:
        if utterance not in labels:
            raise FeatureError(f"utterance {utterance} has no phone labels in the alignment file")
        if utterance not in features:
            raise FeatureError(f"utterance {utterance} has no features")
        x, y, dropped = align_to_labels(features[utterance], labels[utterance], utterance, tolerance=tolerance)
        inputs.append(x)
        targets.append(y)
        trimmed += dropped
    if not inputs:
        raise FeatureError("no utterances to build a probe dataset from")
    return torch.from_numpy(np.concatenate(inputs)).float(), torch.from_numpy(np.concatenate(targets)).long(), trimmed


# ----------------------------------------------------------------------------- phone probe


def phone_probe(
    features: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    train: Sequence[str],
    test: Sequence[str],
    *,
    num_classes: int,
    settings: ProbeSettings | None = None,
    tolerance: int = 2,
) -> dict:
    """Frame phone classification. -> {"accuracy" (test, %), "train_accuracy", sizes, "trimmed_frames", ...}."""
    settings = settings or PHONE_SETTINGS
    train_x, train_y, train_trimmed = frame_dataset(features, labels, train, tolerance=tolerance)
    test_x, test_y, test_trimmed = frame_dataset(features, labels, test, tolerance=tolerance)
    mean, std = standardiser(train_x)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    model = train_classifier(train_x, train_y, num_classes, settings)
    majority = torch.bincount(train_y, minlength=num_classes).argmax()
    return {
        "accuracy": accuracy(model, test_x, test_y),
        "train_accuracy": accuracy(model, train_x, train_y),
        "majority_class_accuracy": 100.0 * (test_y == majority).float().mean().item(),
        "hidden_layers": settings.hidden_layers,
        "num_classes": num_classes,
        "feature_dimension": train_x.shape[1],
        "train_utterances": len(train),
        "test_utterances": len(test),
        "train_frames": len(train_x),
        "test_frames": len(test_x),
        "trimmed_frames": train_trimmed + test_trimmed,
    }


# ----------------------------------------------------------------------------- CTC probe


def collapse(sequence: Sequence[int]) -> list[int]:
    """Merge runs of one label: [3, 3, 0, 0, 3] -> [3, 0, 3]."""
    out: list[int] = []
    for label in sequence:
        if not out or out[-1] != label:
            out.append(int(label))
    return out


def greedy_decode(log_probabilities: Tensor, length: int, blank: int) -> list[int]:
    """Best path: argmax per frame of (T, C+1), merge repeats, drop blanks."""
    return [label for label in collapse(log_probabilities[:length].argmax(-1).tolist()) if label != blank]


def edit_distance(reference: Sequence, hypothesis: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp))
        previous = current
    return previous[-1]


def phone_error_rate(references: Sequence[Sequence], hypotheses: Sequence[Sequence]) -> float:
    """100 * sum of edit distances / sum of reference lengths."""
    errors = sum(edit_distance(r, h) for r, h in zip(references, hypotheses, strict=True))
    return 100.0 * errors / max(1, sum(len(r) for r in references))


def _padded(
    features: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    utterances: Sequence[str],
    mean: Tensor,
    std: Tensor,
    tolerance: int,
):
    """-> list of (standardised features (T, D), collapsed targets, T) per utterance, and frames trimmed."""
    items, trimmed = [], 0
    for utterance in utterances:
        if utterance not in labels:
            raise FeatureError(f"utterance {utterance} has no phone labels in the alignment file")
        x, y, dropped = align_to_labels(features[utterance], labels[utterance], utterance, tolerance=tolerance)
        trimmed += dropped
        items.append(((torch.from_numpy(x).float() - mean) / std, collapse(y.tolist()), len(x)))
    return items, trimmed


def _batch(items) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """-> inputs (B, T, D), input lengths (B,), concatenated targets, target lengths (B,)."""
    lengths = torch.tensor([length for _, _, length in items])
    inputs = torch.zeros(len(items), int(lengths.max()), items[0][0].shape[1])
    for row, (x, _, length) in enumerate(items):
        inputs[row, :length] = x
    targets = torch.tensor([label for _, target, _ in items for label in target], dtype=torch.long)
    return inputs, lengths, targets, torch.tensor([len(target) for _, target, _ in items])


def ctc_probe(
    features: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    train: Sequence[str],
    test: Sequence[str],
    *,
    num_classes: int,
    settings: ProbeSettings | None = None,
    utterances_per_batch: int = 16,
    tolerance: int = 2,
) -> dict:
    """CTC phone recognition with greedy decoding. -> {"per" (test, %), "train_per", sizes, ...}."""
    settings = settings or CTC_SETTINGS
    blank = num_classes
    stacked, _, _ = frame_dataset(features, labels, train, tolerance=tolerance)
    mean, std = standardiser(stacked)
    del stacked
    train_items, train_trimmed = _padded(features, labels, train, mean, std, tolerance)
    test_items, test_trimmed = _padded(features, labels, test, mean, std, tolerance)
    too_short = [u for u, (_, target, length) in zip(train, train_items) if length < len(target)]
    if too_short:
        raise FeatureError(
            f"utterance(s) with fewer frames than phones, CTC cannot align them: {', '.join(too_short[:10])}"
        )

    with seeded(settings.seed):
        model = classifier(train_items[0][0].shape[1], num_classes + 1, settings)
    generator = torch.Generator().manual_seed(settings.seed)
    # Sort by length, cut into batches once (little padding), shuffle the batch order each epoch.
    order = sorted(range(len(train_items)), key=lambda i: train_items[i][2])
    batches = [
        _batch([train_items[i] for i in order[s : s + utterances_per_batch]])
        for s in range(0, len(order), utterances_per_batch)
    ]
    epochs = max(settings.epochs, math.ceil(settings.min_steps / len(batches)))
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    scheduler = cosine_schedule(optimizer, epochs * len(batches))
    criterion = nn.CTCLoss(blank=blank, zero_infinity=True)
    model.train()
    with torch_threads(settings.threads):
        for _ in range(epochs):
            for index in torch.randperm(len(batches), generator=generator).tolist():
                inputs, input_lengths, targets, target_lengths = batches[index]
                log_probabilities = model(inputs).log_softmax(-1)  # (B, T, C+1)
                loss = criterion(log_probabilities.transpose(0, 1), targets, input_lengths, target_lengths)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
    model.eval()

    def score(items) -> float:
        references, hypotheses = [], []
        with torch.inference_mode():
            for x, target, length in items:
                hypotheses.append(greedy_decode(model(x).log_softmax(-1), length, blank))
                references.append(target)
        return phone_error_rate(references, hypotheses)

    return {
        "per": score(test_items),
        "train_per": score(train_items),
        "hidden_layers": settings.hidden_layers,
        "num_classes": num_classes,
        "train_utterances": len(train),
        "test_utterances": len(test),
        "train_frames": sum(length for _, _, length in train_items),
        "test_frames": sum(length for _, _, length in test_items),
        "test_phones": sum(len(target) for _, target, _ in test_items),
        "trimmed_frames": train_trimmed + test_trimmed,
    }


# ----------------------------------------------------------------------------- speaker probe


def pooled_crops(features: np.ndarray, crop_frames: int = SPEAKER_CROP_FRAMES) -> np.ndarray:
    """Non-overlapping crops of (T, D) features, mean-pooled over time -> (floor(T / crop_frames), D)."""
    if crop_frames < 1:
        raise ValueError(f"crop_frames={crop_frames}: expected a positive crop length in frames")
    count = len(features) // crop_frames
    return features[: count * crop_frames].reshape(count, crop_frames, features.shape[1]).mean(1)


def speaker_probe(
    features: dict[str, np.ndarray],
    speakers: dict[str, str],
    train: Sequence[str],
    test: Sequence[str],
    *,
    crop_frames: int = SPEAKER_CROP_FRAMES,
    settings: ProbeSettings | None = None,
) -> dict:
    """Speaker ID from mean-pooled crops. -> {"accuracy" (test crops, %), "num_speakers", crop counts, ...}.

    Test utterances of speakers absent from the train split are left out (counted).
    """
    settings = settings or SPEAKER_SETTINGS
    if crop_frames < 1:
        raise ValueError(f"crop_frames={crop_frames}: expected a positive crop length in frames")

    def crops(utterances):
        inputs, names, short = [], [], []
        for utterance in utterances:
            if utterance not in features:
                raise FeatureError(f"utterance {utterance} has no features")
            pooled = pooled_crops(features[utterance], crop_frames)
            if len(pooled) == 0:
                short.append(utterance)
            inputs.append(pooled)
            names += [speakers[utterance]] * len(pooled)
        return np.concatenate(inputs) if inputs else np.zeros((0, 0), np.float32), names, short

    train_x, train_names, train_short = crops(train)
    speaker_ids = {name: index for index, name in enumerate(sorted(set(train_names)))}
    known = [u for u in test if speakers[u] in speaker_ids]
    test_x, test_names, test_short = crops(known)
    if len(train_names) == 0 or len(test_names) == 0:
        raise FeatureError(
            f"speaker probe: {len(train_names)} training and {len(test_names)} test crops of {crop_frames} frames; "
            "utterances are too short or the test speakers do not occur in the train split"
        )
    train_x, test_x = torch.from_numpy(train_x).float(), torch.from_numpy(test_x).float()
    train_y = torch.tensor([speaker_ids[name] for name in train_names])
    test_y = torch.tensor([speaker_ids[name] for name in test_names])
    mean, std = standardiser(train_x)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    model = train_classifier(train_x, train_y, len(speaker_ids), settings)
    return {
        "accuracy": accuracy(model, test_x, test_y),
        "train_accuracy": accuracy(model, train_x, train_y),
        "chance_accuracy": 100.0 / len(speaker_ids),
        "num_speakers": len(speaker_ids),
        "crop_frames": crop_frames,
        "train_utterances": len(train),
        "test_utterances": len(known),
        "test_utterances_unknown_speaker": len(test) - len(known),
        "train_crops": len(train_x),
        "test_crops": len(test_x),
        "utterances_shorter_than_a_crop": len(train_short) + len(test_short),
    }
