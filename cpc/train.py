"""The training loop: one explicit loop, no trainer framework.

    cpc train recipes/speech/tiny.yaml --run-dir runs/tiny [key=value ...] [--resume]

Writes into the run directory (rank 0 only):

    config.yaml           the resolved config
    metrics.jsonl         one JSON object per log line: step, loss, per-step accuracy, MI bound (InfoNCE and NT-Xent
                          only), other per-step metrics of the objective, lr, samples/s
                          (``"split": "valid"`` lines for validation)
    checkpoints/last.pt   the latest checkpoint; ``step_<N>.pt`` periodic ones (``train.keep_checkpoints``)

Data: the loop asks the data source named by ``data.name`` (cpc.registry.DATA_SOURCES) for
batches of model inputs; it knows nothing about audio or images.

Determinism and resume: batches are a function of (seed, step, rank) (see cpc.data)
and the negatives of step s on rank r are drawn from a generator seeded with (seed, r, s), so
``--resume`` from a checkpoint continues exactly as the uninterrupted run would. The model
draws its training-time augmentation (``train.augment``, cpc.speech.augment) from the same generator.

Distributed: run the same command under ``torchrun --nproc_per_node=N``; each process trains
on its own slice of the data with DistributedDataParallel (nccl on GPU, gloo on CPU) and
samples negatives within its own batch, as in the paper's multi-GPU setup.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from cpc import registry
from cpc.checkpoint import load_checkpoint, save_checkpoint
from cpc.config import ConfigError, from_container, load_config, to_container
from cpc.errors import TrainingError
from cpc.model import build_model
from cpc.runtime import generator_for
from cpc.safe_io import UnsafePathError, lock_holder, locked, open_append, write_atomic

log = logging.getLogger(__name__)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says which checkpoint ``--resume`` continues from."""


# ----------------------------------------------------------------------------- setup


def _distributed() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) when run alone.

    Under torchrun the process group is started even for one process, so that
    ``--nproc_per_node=1`` runs the same DistributedDataParallel path as eight.
    """
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        log.info("torch.distributed: %s, rank %s of %d", backend, os.environ.get("RANK", 0), world_size)
    return int(os.environ.get("RANK", 0)), world_size, int(os.environ.get("LOCAL_RANK", 0))


def _device(config: DictConfig, local_rank: int) -> torch.device:
    if config.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device=cuda, but torch sees no CUDA device here; use train.device=auto or cpu")
    if config.train.device == "cuda" or (config.train.device == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def autocast(config: DictConfig, device: torch.device):
    """bf16 autocast where ``train.precision`` asks for it (auto: on CUDA), else nothing."""
    precision = config.train.precision
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure_kernels(config: DictConfig, device: torch.device) -> None:
    """The fast paths on CUDA: TF32 for the float32 matmuls and convolutions that remain under
    bf16 autocast (the scores; ``train.tf32``), cuDNN's autotuner (every step has the same
    shapes). Process-wide settings, made by the training entry points only."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = config.train.tf32
        torch.backends.cudnn.allow_tf32 = config.train.tf32
        torch.backends.cudnn.benchmark = True


def build_optimizer(model: torch.nn.Module, config: DictConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam as ``optim`` says; the fused CUDA kernel on GPUs (one launch for all parameters)."""
    optim = config.optim
    return torch.optim.Adam(
        model.parameters(),
        lr=optim.lr,
        betas=tuple(optim.betas),
        weight_decay=optim.weight_decay,
        fused=device.type == "cuda" or None,
    )


def compile_model(model: torch.nn.Module, config: DictConfig) -> None:
    """Speed options that change neither weights nor results: ``train.channels_last`` (the conv
    encoder's layout, cpc.speech.encoder) and ``train.compile`` (torch.compile of the encoder, in place:
    parameter names unchanged)."""
    if config.train.channels_last is not None:
        if not hasattr(model.encoder, "channels_last"):
            raise ConfigError(
                f"train.channels_last={str(config.train.channels_last).lower()} needs the raw-audio conv encoder"
            )
        model.encoder.channels_last = config.train.channels_last
    if config.train.compile:
        model.encoder.compile()


def learning_rate_factor(step: int, config: DictConfig) -> float:
    """Linear warmup over ``warmup_steps``, then constant, cosine or linear decay to ``min_lr_ratio``."""
    optim = config.optim
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    if optim.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - optim.warmup_steps) / max(1, config.train.max_steps - optim.warmup_steps))
    if optim.schedule == "cosine":
        decay = 0.5 * (1 + math.cos(math.pi * progress))
    else:  # linear (the schema allows no other value)
        decay = 1 - progress
    return optim.min_lr_ratio + (1 - optim.min_lr_ratio) * decay


TRAINING, VALIDATION = 0, 1  # random streams: negatives of training steps, of validation batches


def negative_generator(
    seed: int, rank: int, step: int, device: torch.device, *, stream: int = TRAINING
) -> torch.Generator:
    """The generator for one step's negatives: a function of (seed, rank, stream, step) only.

    ``numpy.random.SeedSequence`` hashes the tuple into a 64-bit seed, so any non-negative
    ``train.seed`` works (a product of primes overflowed 64 bits from seed 18447 on).
    """
    return generator_for(seed, rank, stream, step, device=device)


# The (K,) entries an InfoNCE criterion reports besides loss_per_step and num_pairs; other
# objectives name theirs in ``criterion.per_step_metrics`` (cpc.objectives.PER_STEP_METRICS).
INFONCE_METRICS = ("accuracy_per_step", "mutual_information")


def per_step_metrics(model) -> tuple[str, ...]:
    return tuple(getattr(model.criterion, "per_step_metrics", INFONCE_METRICS))


class StepMetrics:
    """Sums of a criterion's metrics over several steps, reduced over ranks when read.

    ``names``: the per-step (K,) metrics to sum (accuracy, the MI bound where the loss is one,
    mining shares, ...). They are averaged over (b, t) pairs, so a step k with no pair in
    some batch does not count as 0; the loss is the mean of the optimised loss. A loss
    without an MI bound logs no ``mutual_information`` (not zeros). The sums live on the
    device (no host sync per step) and are saved in checkpoints, so a run resumed in the
    middle of a log window logs what the uninterrupted run would; with InfoNCE's names the
    layout is the one checkpoints always had: loss; accuracy, MI, pairs (K each).
    """

    def __init__(self, steps: int, device: torch.device, names: tuple[str, ...] = INFONCE_METRICS) -> None:
        self.steps = steps
        self.names = tuple(names)
        self.sums = torch.zeros(
            1 + (len(self.names) + 1) * steps, dtype=torch.float64, device=device
        )  # loss; each name, pairs (K each)
        self.count = 0

    def add(self, out) -> None:
        pairs = out["num_pairs"].detach().double()
        self.sums += torch.cat(
            [out["loss"].detach().double()[None], *(out[name].detach().double() * pairs for name in self.names), pairs]
        )
        self.count += 1

    def _totals(self, world_size: int) -> torch.Tensor:
        """The sums and the step count, summed over ranks: one all-reduce, one host copy (a collective)."""
        count = torch.tensor([float(self.count)], dtype=torch.float64, device=self.sums.device)
        return _reduce(torch.cat([self.sums, count]), world_size).cpu()

    def summary(self, world_size: int) -> dict[str, Any]:
        """{"loss", "accuracy" (K), and each other name (K), e.g. "mutual_information"} averaged over
        steps and ranks; None where k had no pair."""
        totals = self._totals(world_size)
        k = self.steps
        loss_sum, count, pairs = totals[0], totals[-1], totals[-1 - k : -1]
        per_pair = lambda values: [None if n == 0 else (v / n).item() for v, n in zip(values, pairs)]
        result = {"loss": (loss_sum / count).item() if count else None}
        for index, name in enumerate(self.names):
            result["accuracy" if name == "accuracy_per_step" else name] = per_pair(
                totals[1 + index * k : 1 + (index + 1) * k]
            )
        return result

    def reset(self) -> None:
        self.sums.zero_()
        self.count = 0

    def state_dict(self, world_size: int) -> dict[str, Any]:
        """The sums reduced over ranks (a collective: call on every rank); rank 0 saves them."""
        totals = self._totals(world_size)
        return {"sums": totals[:-1], "count": int(totals[-1])}

    def load_state_dict(self, state: dict[str, Any], rank: int) -> None:
        """Rank 0 takes the saved sums over all ranks, the others start at zero: the reduction adds up the same."""
        self.reset()
        if rank == 0:
            self.sums.copy_(state["sums"])
            self.count = state["count"]


# ----------------------------------------------------------------------------- logging


def _record_step(line: str, path: Path) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        raise TrainingError(
            f"{path}: {line.strip()[:60]!r} is not a metrics record with a step; move the file away to resume"
        ) from None


class MetricsLog:
    """metrics.jsonl (and wandb when asked); a no-op on ranks other than 0."""

    def __init__(self, run_dir: Path, config: DictConfig, active: bool, *, resumed_at: int | None = None) -> None:
        self.active = active
        self.wandb = None
        if not active:
            return
        path = run_dir / "metrics.jsonl"
        if path.is_symlink():  # its history would be read from, and written to, the link's target
            raise UnsafePathError(f"{path} is a symbolic link; refusing to read or write through it (remove the link)")
        if resumed_at is not None and path.exists():
            # Records after the checkpoint were made by steps that are about to run again.
            kept = [
                line
                for line in path.read_text().splitlines(keepends=True)
                if line.strip() and _record_step(line, path) <= resumed_at
            ]
            write_atomic(path, "".join(kept))
        self.file = open_append(path, "a")
        if config.train.logger == "wandb":
            import wandb  # optional dependency: pip install 'cpc[wandb]'

            id_file = run_dir / "wandb_run_id"
            run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(8)
            write_atomic(id_file, run_id)
            # WANDB_MODE=offline|disabled in the environment is honoured by wandb.init itself.
            self.wandb = wandb.init(
                project=config.train.wandb_project,
                name=run_dir.name,
                id=run_id,
                resume="allow",
                dir=str(run_dir),
                config=to_container(config),
            )
        elif config.train.logger != "none":
            raise ValueError(f"train.logger={config.train.logger!r}: expected 'none' or 'wandb'")

    def write(self, record: dict[str, Any]) -> None:
        if not self.active:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.wandb is not None:
            prefix = record.get("split", "train")
            flat = {}
            for key, value in record.items():
                if isinstance(value, list):
                    flat.update({f"{prefix}/{key}_k{k + 1}": v for k, v in enumerate(value)})
                elif key not in ("step", "split"):
                    flat[f"{prefix}/{key}"] = value
            self.wandb.log(flat, step=record["step"])

    def close(self) -> None:
        if self.active:
            self.file.close()
            if self.wandb is not None:
                self.wandb.finish()


def _reduce(values: torch.Tensor, world_size: int) -> torch.Tensor:
    """Sum a tensor over ranks (identity when alone)."""
    if world_size > 1:
        values = values.clone()
        dist.all_reduce(values)
    return values


# ----------------------------------------------------------------------------- validation


@torch.no_grad()
def validate(model, batches, config, device, rank: int, world_size: int) -> dict[str, Any] | None:
    """Mean loss, per-step accuracy (and MI bound, ...) over the fixed validation batches."""
    model.eval()
    metrics = StepMetrics(config.model.predictor.prediction_steps, device, per_step_metrics(model))
    for index, (inputs, lengths) in enumerate(batches):
        generator = negative_generator(
            config.train.seed, rank, index, device, stream=VALIDATION
        )  # the same at every evaluation
        with autocast(config, device):
            metrics.add(model(inputs, lengths, generator=generator))
    model.train()
    result = metrics.summary(world_size)
    return result if any(value is not None for value in result["accuracy"]) else None


# A model that has not started learning: every objective scores the positive against the same
# N negatives, so guessing wins 1 / (N + 1) of the time. From this step on, a validation whose
# accuracy (mean over k) is below twice that is reported once; healthy runs are far above it by
# then (docs/results.md, "When the loss stays at chance").
CHANCE_CHECK_STEP = 200


def at_chance(accuracy: list[float | None], num_negatives: int) -> bool:
    """True when the mean prediction accuracy over the offsets is below twice chance, 2 / (N + 1)."""
    values = [value for value in accuracy if value is not None]
    return bool(values) and sum(values) / len(values) < 2 / (num_negatives + 1)


class ChanceWatch:
    """Says once when a run is at chance: still there at a validation from :data:`CHANCE_CHECK_STEP`,
    or back there, at any step, after it had left (training or validation accuracy). A run that
    has left has some offset k at 4 / (N + 1) or more; back at chance, every offset is below 2 / (N + 1)."""

    def __init__(self, num_negatives: int) -> None:
        self.num_negatives = num_negatives
        self.left_chance = False
        self.warned = False

    def state_dict(self) -> dict[str, bool]:
        return {"left_chance": self.left_chance, "warned": self.warned}

    def load_state_dict(self, state: dict[str, bool]) -> None:
        self.left_chance, self.warned = bool(state["left_chance"]), bool(state["warned"])

    def check(self, accuracy: list[float | None], step: int, split: str) -> str | None:
        """The warning to log for this step's ``split`` ("training" or "validation") accuracy per k, or None."""
        values = [value for value in accuracy if value is not None]
        if not values or self.warned:
            return None
        chance = 1 / (self.num_negatives + 1)
        if max(values) >= 4 * chance:
            self.left_chance = True
            return None
        if self.left_chance and max(values) < 2 * chance:
            self.warned = True
            return (
                f"step {step}: the model has fallen back to chance: {split} accuracy is below 2 / (N + 1) = "
                f"{2 * chance:.3f} at every k (N = {self.num_negatives} negatives), after it had reached 4 / (N + 1); "
                "see docs/results.md, 'When the loss stays at chance'"
            )
        if split == "validation" and step >= CHANCE_CHECK_STEP and at_chance(accuracy, self.num_negatives):
            self.warned = True
            return (
                f"step {step}: the model is not learning yet: validation accuracy (mean over k) is below twice chance, "
                f"2 / (N + 1) = {2 * chance:.3f} with N = {self.num_negatives} negatives. Runs can sit at chance for a "
                "while; if this one stays there, see docs/results.md, 'When the loss stays at chance'"
            )
        return None


# ----------------------------------------------------------------------------- the loop


# Settings a resumed run may change: how long it runs, how it logs, validates and checkpoints,
# and where and how fast it computes. Anything else (model, optimiser, schedule, data
# windows, augmentation, seed) would make the resumed run a different run than its checkpoint describes.
RESUMABLE_KEYS = (
    "train.max_steps",
    "train.log_every",
    "train.valid_every",
    "train.valid_batches",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.progress",
    "train.threads",
    "train.device",
    "train.logger",
    "train.wandb_project",
    "train.compile",
    "train.tf32",
    "train.channels_last",
    "data.num_workers",
    "data.root",
)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _initial_model(config: DictConfig) -> tuple[DictConfig, dict[str, Any]]:
    """``train.init_from``: the config with that checkpoint's model section, and its weights."""
    path = config.train.init_from
    state = load_checkpoint(path)
    saved = state["config"]["model"]
    if to_container(config.model) != saved:
        log.info("train.init_from=%s: the model section is the checkpoint's, not the recipe's", path)
    return from_container({**to_container(config), "model": saved}), state["model"]


LOCK_FILE = ".train.lock"
RUN_FILES = ("config.yaml", "metrics.jsonl", "wandb_run_id")  # what a run writes before its first checkpoint


def check_resume(saved: dict[str, Any], config: DictConfig, step: int, path: Path) -> None:
    """Refuse a resume whose config differs from the checkpoint's outside RESUMABLE_KEYS, naming the keys."""
    # The saved config through the schema: one written before a key existed gets its default,
    # which is what that run used (e.g. model.loss.name, data.name).
    before, after = _flatten(to_container(from_container(saved))), _flatten(to_container(config))
    changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
    refused = [key for key in changed if key not in RESUMABLE_KEYS]
    if refused:
        shown = "; ".join(f"{key}: {before.get(key)!r} in the checkpoint, {after.get(key)!r} now" for key in refused)
        raise ConfigError(
            f"--resume cannot change {', '.join(refused)} ({shown}). A resume may change only {', '.join(RESUMABLE_KEYS)}; "
            f"start a new --run-dir to train with other settings"
        )
    if config.train.max_steps < step:
        raise ConfigError(f"--resume: train.max_steps={config.train.max_steps} is below the step of {path} ({step})")
    for key in changed:
        log.info("--resume: %s changed from %r to %r", key, before.get(key), after.get(key))


def _check_run_dir(run_dir: Path, resume: bool, *, locked_here: bool = False) -> None:
    last_path = run_dir / "checkpoints" / "last.pt"
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir {run_dir} is a file, not a folder")
    holder = None if locked_here else lock_holder(run_dir, LOCK_FILE)
    if holder is not None:
        raise TrainingError(
            f"another cpc train is writing to {run_dir}: {run_dir / LOCK_FILE} is held by process {holder}"
        )
    if resume and not last_path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {last_path}")
    if not resume and last_path.exists():
        raise ConfigError(
            f"{run_dir} already holds a run (checkpoints/last.pt); pass --resume or pick another --run-dir"
        )
    # A run killed before its first checkpoint leaves these; a new run would append to them.
    leftovers = [name for name in RUN_FILES if (run_dir / name).exists()] + sorted(
        f"checkpoints/{path.name}" for path in (run_dir / "checkpoints").glob("step_*.pt")
    )
    if not resume and leftovers:
        raise ConfigError(
            f"{run_dir} holds {', '.join(leftovers)} from a run that saved no checkpoints/last.pt, so there is nothing to "
            f"resume; to start over, delete them (or the folder: rm -r {run_dir}), or pick another --run-dir"
        )


# ----------------------------------------------------------------------------- the pieces of a run
# setup_run (model, optimiser, schedule; restore on resume) -> build_data_source -> training_step
# per step, with checkpoint and validate along the way. ``cpc bench train`` times training_step.


@dataclass
class Run:
    """What one training process holds. ``model`` is the CPC model (what checkpoints save);
    ``forward`` computes the loss: the model, or its DistributedDataParallel wrapper."""

    config: DictConfig
    model: nn.Module
    forward: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    start_step: int = 0
    state: dict[str, Any] | None = None  # the checkpoint resumed from
    chance: ChanceWatch | None = None  # whether the model has left chance (saved with the run)


def setup_run(
    config: DictConfig,
    device: torch.device,
    *,
    rank: int = 0,
    world_size: int = 1,
    local_rank: int = 0,
    resume_from: Path | None = None,
) -> Run:
    """Model, optimiser and schedule as ``config`` says (``train.init_from``'s weights when set),
    restored from ``resume_from`` when given; then the speed options and the DDP wrapper."""
    initial = None
    if config.train.get("init_from"):
        config, initial = _initial_model(config)
    # Identical initialisation on every rank (DDP also broadcasts).
    torch.manual_seed(config.train.seed)
    model = build_model(config).to(device)
    if initial is not None and resume_from is None:  # a resume reads its own weights
        model.load_state_dict(initial, strict=True)
    optimizer = build_optimizer(model, config, device)
    configure_kernels(config, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate_factor(step, config))
    run = Run(config, model, model, optimizer, scheduler, device, rank, world_size, local_rank)
    if resume_from is not None:
        restore(run, resume_from)
    compile_model(model, config)
    if dist.is_initialized():
        run.forward = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    return run


def restore(run: Run, path: Path) -> None:
    """Continue ``run`` from the checkpoint at ``path``: weights, optimiser, schedule, step and random state."""
    state = load_checkpoint(path, map_location=run.device)
    check_resume(state["config"], run.config, state["step"], path)
    run.model.load_state_dict(state["model"], strict=True)
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.start_step, run.state = state["step"], state
    torch.set_rng_state(state["rng"]["torch"].cpu())
    if run.device.type == "cuda" and state["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(state["rng"]["cuda"].cpu())
    log.info("resumed from %s at step %d", path, run.start_step)


def build_data_source(run: Run):
    """The data source ``data.name`` picks (cpc.registry), from the run's start step on; checked against the model.
    Every rank lists the data the same way, then takes its own batches."""
    config, state = run.config, run.state
    data_config = config
    if state is not None and state.get("data_loading") and config.data.get("loading") == "auto":
        # auto decides by the free device memory; a resume keeps the batch stream its run started with.
        data_config = config.copy()
        OmegaConf.update(data_config, "data.loading", state["data_loading"])  # the enum value, as a string
    build = registry.sections()["data"][config.data.name].build
    source = build(data_config, rank=run.rank, world_size=run.world_size, start_step=run.start_step, device=run.device)
    source.check(run.model)
    return source


def transform_start_step(config: DictConfig) -> int:
    """The first step that sees a modality's training-time transform (``train.augment.start_step``); 0 without one."""
    starts = [OmegaConf.select(config, f"train.{key}.start_step", default=0) or 0 for key in registry.train_sections()]
    return max(starts, default=0)


def training_step(
    run: Run, inputs: Tensor, lengths: Tensor | None, step: int, *, augment: bool = True, checkpoint: Path | None = None
) -> dict[str, Tensor]:
    """One optimiser step on one batch -> the criterion's metrics dict ({"loss", "accuracy_per_step", ...}).

    Negatives (and augmentation) are drawn from the generator of (seed, rank, step); the loss
    runs under the run's precision; gradients are clipped at ``optim.grad_clip``; the schedule
    advances. A non-finite loss on any rank raises TrainingError (naming ``checkpoint``, the last
    good one) before it can reach the weights."""
    config, model = run.config, run.model
    generator = negative_generator(config.train.seed, run.rank, step, run.device)
    with autocast(config, run.device):
        out = run.forward(inputs, lengths, generator=generator, augment=augment)
    run.optimizer.zero_grad(set_to_none=True)
    out["loss"].backward()
    # Read after the backward is queued: the one host sync of the step then waits for work
    # already on the device instead of starving it.
    finite = _reduce(torch.isfinite(out["loss"].detach()).float().reshape(1), run.world_size)
    if finite.item() < run.world_size:
        good = checkpoint if checkpoint is not None and checkpoint.exists() else "none (no checkpoint written yet)"
        raise TrainingError(
            f"non-finite loss ({out['loss'].item()}) at step {step + 1}; training stopped, the last good checkpoint is {good}"
        )
    if config.optim.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    return out


def save_run(run: Run, step: int, window: StepMetrics, source, checkpoint_dir: Path) -> None:
    """last.pt (and every ``checkpoint_every`` steps a kept step_<n>.pt, the oldest beyond
    ``keep_checkpoints`` removed). Every rank takes part in the metrics reduction; rank 0 writes."""
    log_window = window.state_dict(run.world_size)
    if run.rank != 0:
        return
    config = run.config
    state = {
        "log_window": log_window,
        "config": to_container(config),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "step": step,
        "data_loading": getattr(source, "loading", None),  # speech: "device" or "loader", which auto picked
        "chance": run.chance.state_dict() if run.chance is not None else None,
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state() if run.device.type == "cuda" else None,
        },
    }
    save_checkpoint(checkpoint_dir / "last.pt", state)
    keep = config.train.keep_checkpoints
    if keep > 0 and step % config.train.checkpoint_every == 0:
        save_checkpoint(checkpoint_dir / f"step_{step}.pt", state)
        periodic = sorted(checkpoint_dir.glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
        for old in periodic[:-keep]:
            old.unlink()


def train(config: DictConfig, run_dir: str | os.PathLike, *, resume: bool = False) -> dict[str, Any]:
    """Train CPC as ``config`` says, writing into ``run_dir``. Returns the last logged metrics.

    Everything is checked (run folder, resume, corpus, window) before anything is written.
    From its first write on, the run holds ``run_dir/.train.lock``: a second training into
    the same folder is refused, naming the process that holds it.
    """
    with contextlib.ExitStack() as held:  # the run directory's lock, once taken
        return _train(config, Path(run_dir), resume, held)


def train_or_resume(config: DictConfig, run_dir: str | os.PathLike, *, description: str = "") -> Path:
    """Train ``config`` into ``run_dir`` unless it already holds the run: reuse a checkpoint that
    has reached ``train.max_steps``, resume one that has not, start afresh otherwise (the demos'
    way to rerun). -> the path of checkpoints/last.pt. ``description`` says what is trained, for the log."""
    run_dir = Path(run_dir)
    checkpoint = run_dir / "checkpoints" / "last.pt"
    if checkpoint.exists():
        step = load_checkpoint(checkpoint)["step"]
        if step >= config.train.max_steps:
            log.info("training: reusing %s (step %d)", checkpoint, step)
            return checkpoint
        log.info("training: resuming %s from step %d to %d", checkpoint, step, config.train.max_steps)
        train(config, run_dir, resume=True)
        return checkpoint
    log.info("training: %s for %d steps", description or "the recipe", config.train.max_steps)
    train(config, run_dir)
    return checkpoint


def _train(config: DictConfig, run_dir: Path, resume: bool, held: contextlib.ExitStack) -> dict[str, Any]:
    rank, world_size, local_rank = _distributed()
    device = _device(config, local_rank)
    if config.train.threads > 0:
        torch.set_num_threads(config.train.threads)
    if device.type == "cpu" and rank == 0:  # what a shared machine changes (docs/speed.md)
        policy = os.environ.get("OMP_WAIT_POLICY") or "OpenMP's default"
        log.info("CPU: %d torch threads, OMP_WAIT_POLICY %s", torch.get_num_threads(), policy)
    last_path = run_dir / "checkpoints" / "last.pt"
    _check_run_dir(run_dir, resume)
    run = setup_run(
        config,
        device,
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        resume_from=last_path if resume else None,
    )
    source = build_data_source(run)
    if rank == 0:
        _take_run_dir(run_dir, resume, run.config, held)
    metrics = MetricsLog(run_dir, run.config, active=rank == 0, resumed_at=run.start_step if resume else None)
    window = StepMetrics(
        run.config.model.predictor.prediction_steps, device, per_step_metrics(run.model)
    )  # the current log window
    if resume and "log_window" in run.state:
        window.load_state_dict(run.state["log_window"], rank)
    try:
        last_record = _loop(run, source, window, metrics, run_dir, resume)
    finally:
        metrics.close()
    if world_size > 1:
        # Leave together, once rank 0 has written the last checkpoint. A rank that exits while a
        # peer still holds its gloo connections can abort at interpreter exit, after
        # destroy_process_group ("terminate called without an active exception", SIGABRT, so
        # torchrun fails the run): 4 of 60 runs of a two-rank gloo DDP script whose rank 0
        # lingered 0.3 s, 0 of 60 with this barrier. Only on success: after an error or Ctrl-C
        # the ranks may not all get here.
        dist.barrier()
    return last_record


def _take_run_dir(run_dir: Path, resume: bool, config: DictConfig, held: contextlib.ExitStack) -> None:
    """Rank 0, before its first write: lock the folder, check it again, clear stale temporary files, write config.yaml."""
    checkpoint_dir = run_dir / "checkpoints"
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    held.enter_context(locked(run_dir, LOCK_FILE, what="cpc train", error=TrainingError))
    _check_run_dir(run_dir, resume, locked_here=True)  # again, now that no other process can write here
    for stale in checkpoint_dir.glob(".*.tmp"):  # left by a run killed while writing a checkpoint
        stale.unlink()
    write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(config))


def _loop(run: Run, source, window: StepMetrics, metrics: MetricsLog, run_dir: Path, resume: bool) -> dict[str, Any]:
    """Steps from the run's start to ``train.max_steps``: log, validate and checkpoint along the way."""
    config, rank = run.config, run.rank
    checkpoint_dir = run_dir / "checkpoints"
    last_path = checkpoint_dir / "last.pt"
    saved_step = run.start_step if resume else None  # the step of last.pt, for the Ctrl-C message
    watch = run.chance = ChanceWatch(config.model.loss.num_negatives)
    if run.state is not None and run.state.get("chance"):  # checkpoints from before it have none
        watch.load_state_dict(run.state["chance"])
    window_start = time.perf_counter()
    last_record: dict[str, Any] = {}
    # A progress bar on a terminal; in a log file (not a TTY) plain lines at every log step instead.
    show_bar = rank == 0 and config.train.progress and sys.stderr.isatty()
    progress = tqdm(
        total=config.train.max_steps,
        initial=run.start_step,
        disable=not show_bar,
        desc="train",
        unit="step",
        dynamic_ncols=True,
    )
    if run.start_step >= config.train.max_steps:
        log.info("%s is already at step %d = train.max_steps: nothing to train", last_path, run.start_step)
    run.model.train()
    batches = source.train_batches()
    augment_from = transform_start_step(config)  # clean inputs for the loop's steps 0 .. start_step - 1
    try:
        for step in range(run.start_step, config.train.max_steps):
            inputs, lengths = next(batches)  # (B, S) waveforms, (B, rows, cols, P, P) patches, ...
            out = training_step(run, inputs, lengths, step, augment=step >= augment_from, checkpoint=last_path)
            done = step + 1
            window.add(out)
            progress.update(1)
            if done % config.train.log_every == 0 or done == config.train.max_steps:
                last_record = _log_window(
                    run, window, done, time.perf_counter() - window_start, source, metrics, progress, show_bar
                )
                _warn(run, watch.check(last_record["accuracy"], done, "training"))
                window_start = time.perf_counter()
            if done % config.train.valid_every == 0 or done == config.train.max_steps:
                _validate_and_report(run, source, done, metrics, progress, show_bar, watch)
            if done % config.train.checkpoint_every == 0 or done == config.train.max_steps:
                saved_step = done  # before writing: a Ctrl-C during the write names the step last.pt then holds
                save_run(run, done, window, source, checkpoint_dir)
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted; --resume continues from {last_path} (step {saved_step})"
            if saved_step is not None
            else "interrupted before the first checkpoint; nothing to resume from"
        ) from None
    finally:
        progress.close()
    return last_record


def _log_window(
    run: Run, window: StepMetrics, done: int, elapsed: float, source, metrics: MetricsLog, progress, show_bar: bool
) -> dict[str, Any]:
    """Write the log window's averages (a collective: every rank), show them, start a new window."""
    config = run.config
    record = {
        "step": done,
        **window.summary(run.world_size),
        "lr": run.scheduler.get_last_lr()[0],
        "samples_per_s": window.count * run.world_size * source.examples_per_batch / elapsed,
    }
    metrics.write(record)
    valid_accuracy = [a for a in record["accuracy"] if a is not None]
    first, mean = (
        (valid_accuracy[0], sum(valid_accuracy) / len(valid_accuracy)) if valid_accuracy else (math.nan, math.nan)
    )
    progress.set_postfix(
        loss=f"{record['loss']:.3f}", acc1=f"{first:.2f}", acc=f"{mean:.2f}", sps=f"{record['samples_per_s']:.1f}"
    )
    if run.rank == 0 and not show_bar:
        log.info(
            "step %d/%d | loss %.4f | acc k=%d %.3f | acc mean %.3f | lr %.3g | %.1f samples/s",
            done,
            config.train.max_steps,
            record["loss"],
            run.model.predictors.offsets[0],
            first,
            mean,
            record["lr"],
            record["samples_per_s"],
        )
    window.reset()
    return record


def _validate_and_report(
    run: Run, source, done: int, metrics: MetricsLog, progress, show_bar: bool, watch: ChanceWatch
) -> None:
    """Validate, log the result and let ``watch`` say whether the model is at chance."""
    config, rank = run.config, run.rank
    result = validate(run.model, source.valid_batches(), config, run.device, rank, run.world_size)
    if result is None:
        return
    metrics.write({"step": done, "split": "valid", **result})
    if rank == 0:
        message = f"step {done}: valid loss {result['loss']:.4f}, accuracy k={run.model.predictors.offsets[0]} {result['accuracy'][0]:.3f}"
        progress.write(message) if show_bar else log.info("%s", message)
    _warn(run, watch.check(result["accuracy"], done, "validation"))


def _warn(run: Run, message: str | None) -> None:
    if message is not None and run.rank == 0:
        log.warning("%s", message)


# ----------------------------------------------------------------------------- CLI


def register(subparsers: argparse._SubParsersAction) -> None:
    from cpc.config import describe_keys
    from cpc.resources import list_recipes

    parser = subparsers.add_parser(
        "train",
        help="train a CPC model from a recipe",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train CPC from a recipe (a YAML file or a shipped name: " + ", ".join(list_recipes()) + "), with\n"
        "key=value overrides. Writes RUN_DIR/config.yaml, metrics.jsonl and checkpoints/last.pt.\n"
        "Distributed: torchrun --nproc_per_node=N $(which cpc) train ...",
        epilog="config keys (key: type = default):\n"
        + describe_keys()
        + "\n\nA --resume may change only: "
        + ", ".join(RESUMABLE_KEYS),
    )
    parser.add_argument("recipe", help="recipe YAML or shipped recipe name, e.g. speech/tiny")
    parser.add_argument(
        "--run-dir", help="output folder (config, metrics, checkpoints); required unless --print-config"
    )
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.pt")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config (recipe + overrides) as YAML and exit"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.max_steps=200")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    config = load_config(args.recipe, args.overrides)
    if args.print_config:
        print(OmegaConf.to_yaml(OmegaConf.create(to_container(config))), end="")
        return 0
    if not args.run_dir:
        raise ConfigError("cpc train needs --run-dir (or --print-config)")
    try:
        train(config, args.run_dir, resume=args.resume)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0
