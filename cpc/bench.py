"""Benchmarks (``cpc bench``): measured, not asserted. Prints a table and writes JSON.

    cpc bench train [--recipe speech/paper --recipe speech/tiny] --json bench.json

For each recipe, times full training steps (forward, InfoNCE, backward, Adam) on one batch of
the recipe's size (speech: random batch_size x window samples; other data sources: the first
batch their source hands out, e.g. batch_size x 7 x 7 x 8 x 8 patches), reporting
the median of ``--steps`` steps after ``--warmup`` untimed ones, and the peak memory: the
process's peak resident set size on CPU, ``torch.cuda.max_memory_allocated`` on GPU. The same
step with the negatives *copied* into a (B, T, K, 1+N, C) tensor (as CPC_audio does) is timed
beside it. Each measurement runs in a fresh process so that peak memory is its own. A recipe
is a shipped name (``speech/tiny``, see :mod:`cpc.resources`) or a YAML file.

    cpc bench data --recipe speech/tiny data.root=PATH

times the training DataLoader alone (windows per second), to check it keeps up with the model.

    cpc bench extract [--recipe speech/paper --recipe speech/tiny] [--threads 2] --json extract.json

times feature extraction, ``model.extract_features(layer="context")`` in inference mode, on a
random batch (``--batch-size`` x ``--seconds``, default 8 x 10 s) of an untrained model: the
median of ``--runs`` runs after ``--warmup``, as a real-time factor (seconds of audio per second
of compute). Beside it, the fp32 matmul throughput of the same threads (a 2048 x 2048 matmul,
GFLOP/s) and the model's FLOPs per second of audio, counted from its layer list (each conv:
out x in x kernel multiply-adds per output frame; the GRU: 3 gates x (input + hidden) x hidden
per frame; x 2 for FLOPs; norms, ReLUs and biases not counted), give the fraction of matmul
throughput the extraction achieves. Targets (reported, not asserted): paper >= 15x real time and
tiny >= 200x on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from cpc.runtime import plain
from cpc.speech.audio import SAMPLE_RATE

log = logging.getLogger(__name__)

DEFAULT_RECIPES = ["speech/paper", "speech/tiny"]
EXTRACT_TARGETS = {"speech/paper": 15.0, "speech/tiny": 200.0}  # x real time on 2 CPU cores; reported, not asserted
PAPER_WINDOWS = 300_000 * 64  # the paper's pretraining: ~300k updates of 64 windows (8 GPUs x 8)
# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from NVIDIA's datasheets; matched on the device name.
DENSE_BF16_PEAKS = {
    "H100 PCIe": (756.0, "NVIDIA H100 PCIe datasheet: 1513 TFLOP/s bf16 with sparsity, 756 dense"),
    "H100": (989.4, "NVIDIA H100 SXM datasheet: 1979 TFLOP/s bf16 with sparsity, 989.4 dense"),
    "H200": (989.4, "NVIDIA H200 SXM datasheet: 1979 TFLOP/s bf16 with sparsity, 989.4 dense"),
    "A100": (312.0, "NVIDIA A100 datasheet: 312 TFLOP/s bf16 dense"),
}
MATMUL_SIZE = 2048  # 17 GFLOP a product: long enough to time, short enough for a smoke test


def _check_counts(**counts: tuple[int, int]) -> None:
    """Raise ValueError naming the option whose value is below its minimum (``name=(value, minimum)``)."""
    for name, (value, minimum) in counts.items():
        if value < minimum:
            raise ValueError(f"--{name} must be at least {minimum}, got {value}")


def time_training_step(
    recipe: str,
    *,
    copy_negatives: bool,
    steps: int,
    warmup: int,
    device: str,
    overrides: list[str],
    batch_size: int | None = None,
    with_data: bool = False,
    profile: str | None = None,
) -> dict:
    """Run in the measuring process: median seconds per training step and peak memory.

    The step is the training loop's own (cpc.train.training_step: the loss under the run's
    precision, backward, the finite-loss check, gradient clipping, optimizer and schedule),
    set up as the loop sets it up (cpc.train.setup_run: fused Adam on CUDA, TF32, cuDNN
    autotuning, ``train.compile``). ``with_data``: each
    step also takes its batch from the recipe's data source (the loader, or the corpus held on
    the device), so a data path that cannot keep up shows in the time.
    """
    from cpc.config import load_config
    from cpc.resources import recipe_path
    from cpc.train import autocast, setup_run, training_step

    config = load_config(recipe_path(recipe), overrides + ([f"train.batch_size={batch_size}"] if batch_size else []))
    torch_device = torch.device(device)
    run = setup_run(config, torch_device)  # the training loop's model, optimizer, schedule, kernel settings and compile
    model = run.model
    if copy_negatives:
        model.criterion.copy_negatives = True  # the same scores, by materialising the candidates
    model.train()
    batches = data_batches(config, device) if with_data else None
    batch, lengths = next(batches) if with_data else example_batch(config, device)
    baseline_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # torch + model, before any step
    step_index = 0

    def step() -> None:
        nonlocal batch, lengths, step_index
        if batches is not None:
            batch, lengths = next(batches)
        training_step(
            run, batch, lengths, step_index
        )  # the training loop's step: loss, backward, clipping, optimizer, schedule
        step_index += 1

    times = []
    for index in range(warmup + steps):
        _synchronize(device)
        start = time.perf_counter()
        step()
        _synchronize(device)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    result = {
        "median_step_s": median,
        "min_step_s": min(times),
        "max_step_s": max(times),
        "steps_timed": steps,
        "samples_per_s": config.train.batch_size / median,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "baseline_rss_mb": baseline_rss_mb,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
        "batch_size": config.train.batch_size,
        "window": config.data.get("window"),
        "example_shape": list(batch.shape[1:]),
        "num_negatives": config.model.loss.num_negatives,
        "negative_scope": str(plain(config.model.loss.negative_scope)),
        "precision": "bf16" if autocast(config, torch_device).__class__ is torch.autocast else "fp32",
        "compile": bool(config.train.compile),
        "with_data": with_data,
        "data_loading": str(plain(config.data.get("loading"))) if with_data else None,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    if config.data.name == "speech":
        result.update(training_flops(model, config.train.batch_size, config.data.window, median, device))
    if profile:
        result["profile"] = profile_steps(step, device, profile, steps=max(steps, 3))
    return result


def training_flops(model: torch.nn.Module, batch_size: int, window: int, step_s: float, device: str) -> dict:
    """Model FLOPs per training step and the share of the device's dense bf16 peak they reach (MFU).

    Counted as 3 x the forward FLOPs of the encoder, context network and predictors
    (:func:`model_flops` and the W_k maps; the backward costs about twice the forward), per window of
    ``window`` samples. The InfoNCE scoring is not model FLOPs and is not counted.
    """
    # The predictors' matrices: one multiply-add per weight and frame (W_k for every k).
    predictor_macs = sum(p.numel() for p in model.predictors.parameters() if p.dim() > 1)
    forward_gflop_per_s = (
        model_flops(model)["gflop_per_audio_s"] + 2 * predictor_macs * SAMPLE_RATE / model.downsample_rate / 1e9
    )
    step_gflop = 3 * forward_gflop_per_s * batch_size * window / SAMPLE_RATE
    achieved = step_gflop / step_s / 1e3  # TFLOP/s
    peak, source = peak_bf16_tflops(device)
    # On a CPU, the share of what the same threads reach on a plain fp32 matmul.
    matmul = matmul_gflops(device) if device == "cpu" else None
    return {
        "matmul_gflops": matmul,
        "share_of_matmul": None if matmul is None else achieved * 1e3 / matmul,
        "model_gflop_per_window_forward": forward_gflop_per_s * window / SAMPLE_RATE,
        "model_gflop_per_step": step_gflop,
        "achieved_tflops": achieved,
        "peak_bf16_tflops": peak,
        "peak_source": source,
        "mfu": None if peak is None else achieved / peak,
        "paper_budget_windows": PAPER_WINDOWS,
        "paper_budget_minutes": PAPER_WINDOWS / (batch_size / step_s) / 60,
    }


def peak_bf16_tflops(device: str) -> tuple[float | None, str]:
    """The device's dense (no sparsity) bf16 tensor-core peak from its datasheet, and where it comes from."""
    if device != "cuda":
        return None, "no bf16 peak for CPUs: MFU is reported on CUDA devices only"
    name = torch.cuda.get_device_name()
    for key, (peak, source) in DENSE_BF16_PEAKS.items():
        if key in name:
            return peak, source
    return None, f"no datasheet peak known for {name!r}"


def profile_steps(step, device: str, path: str, *, steps: int) -> dict:
    """Profile ``steps`` training steps with torch.profiler: the table of operators by device
    time goes to ``path``; returns the share of wall-clock time in which the device was busy
    (the union of kernel intervals over the profiled span; profiler overhead makes it a lower bound)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    _synchronize(device)
    with profile(activities=activities) as profiler:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        _synchronize(device)
        wall_s = time.perf_counter() - start
    busy = None
    if device == "cuda":
        intervals = sorted(
            (event.time_range.start, event.time_range.end)
            for event in profiler.events()
            if event.device_type.name == "CUDA"
        )
        busy_us, reach = 0.0, -math.inf
        for begin, end in intervals:  # union of the kernels' [start, end) intervals
            if end > reach:
                busy_us += end - max(begin, reach)
                reach = end
        span_us = (intervals[-1][1] - intervals[0][0]) if intervals else 0.0
        busy = {
            "device_busy_share_of_wall": busy_us / 1e6 / wall_s,
            "device_busy_share_of_kernel_span": busy_us / span_us if span_us else None,
        }
    averages = profiler.key_averages()
    try:
        table = averages.table(
            sort_by="self_cuda_time_total" if device == "cuda" else "self_cpu_time_total", row_limit=30
        )
    except (KeyError, AttributeError, ValueError):  # newer torch names the column self_device_time_total
        table = averages.table(sort_by="self_device_time_total", row_limit=30)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(
        f"{steps} training steps, {wall_s:.4f} s wall ({wall_s / steps * 1e3:.2f} ms/step under the profiler)\n"
        f"{json.dumps(busy)}\n\n{table}\n"
    )
    return {"path": path, "steps": steps, "wall_s": wall_s, **(busy or {})}


def data_batches(config, device: str):
    """The recipe's own training batches (cpc.registry.DATA_SOURCES), as the training loop gets them."""
    from cpc import registry
    from cpc.resources import resolve_data_root

    if "root" in config.data:
        config.data.root = resolve_data_root(config.data.root)
    source = registry.sections()["data"][config.data.name].build(config, device=torch.device(device))
    return source.train_batches()


def example_batch(config, device: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One training batch of the recipe's shape: random audio for speech (no I/O), else the data source's first batch."""
    if config.data.name == "speech":
        return torch.randn(config.train.batch_size, config.data.window, device=device), None  # (B, S)
    from cpc import registry

    source = registry.sections()["data"][config.data.name].build(config, device=torch.device(device))
    return next(source.train_batches())


def _measure_in_fresh_process(
    recipe: str,
    copy_negatives: bool,
    args: argparse.Namespace,
    batch_size: int | None = None,
    profile: str | None = None,
) -> dict:
    from cpc.cli import CommandError

    request = {
        "recipe": recipe,
        "copy_negatives": copy_negatives,
        "steps": args.steps,
        "warmup": args.warmup,
        "device": args.device,
        "overrides": args.overrides,
        "batch_size": batch_size,
        "with_data": args.data,
        "profile": profile,
    }
    result = subprocess.run(
        [sys.executable, "-m", "cpc.bench", "--child", json.dumps(request)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        # Inputs were checked in this process, so this is a failure of the measurement itself
        # (out of memory, a bug): one line here, the child's traceback with --verbose.
        log.debug("measuring process for %s failed:\n%s", recipe, result.stderr)
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit code {result.returncode}"
        raise CommandError(
            f"benchmark of {recipe} (copy_negatives={copy_negatives}) failed: {last} (rerun with -v for its traceback)"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def machine_info(device: str) -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def bench_train(args: argparse.Namespace) -> dict:
    from cpc.config import load_config
    from cpc.resources import recipe_path

    recipes = args.recipe or DEFAULT_RECIPES
    _check_counts(steps=(args.steps, 1), warmup=(args.warmup, 0), **{"batch-size": (min(args.batch_size or [1]), 1)})
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here; use --device cpu")
    for recipe in recipes:  # a missing recipe or a bad override fails here, before any timing
        load_config(recipe_path(recipe), args.overrides)
    report = {
        "benchmark": "train_step",
        "machine": machine_info(args.device),
        "recipes": {},
    }  # keyed "recipe" or "recipe xB"
    for recipe in recipes:
        for batch_size in args.batch_size or [None]:
            label = recipe if batch_size is None else f"{recipe} x{batch_size}"
            print(f"timing {label} ...", file=sys.stderr, flush=True)
            profile = None
            if args.profile:
                profile = str(
                    args.profile
                    / f"{Path(recipe).stem if recipe.endswith('.yaml') else recipe.replace('/', '-')}-b{batch_size or 'recipe'}.txt"
                )
            entry = _measure_in_fresh_process(recipe, False, args, batch_size, profile)
            if not args.skip_copied:
                copied = _measure_in_fresh_process(recipe, True, args, batch_size)
                entry["copied_negatives_median_step_s"] = copied["median_step_s"]
                entry["copied_negatives_peak_rss_mb"] = copied["peak_rss_mb"]
                entry["copied_negatives_cuda_peak_mb"] = copied["cuda_peak_mb"]
                entry["speedup_vs_copied"] = copied["median_step_s"] / entry["median_step_s"]
            report["recipes"][label] = entry
    return report


def print_table(report: dict) -> None:
    cuda = report["machine"]["device"] == "cuda"
    memory, key = ("cuda peak MB", "cuda_peak_mb") if cuda else ("peak RSS MB", "peak_rss_mb")
    header = f"| recipe | batch x example | N | s/step (median) | samples/s | {memory} | copied: s/step | copied: {memory} | speedup |"
    if cuda:
        header += " TFLOP/s | MFU | paper budget, min |"
    else:
        header += " model GFLOP/s | of matmul |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for label, r in report["recipes"].items():
        copied = (
            f"{r['copied_negatives_median_step_s']:.3f} | {r['copied_negatives_' + key]:.0f} | {r['speedup_vs_copied']:.2f}x"
            if "copied_negatives_median_step_s" in r
            else "- | - | -"
        )
        shape = " x ".join(str(n) for n in r.get("example_shape") or [r["window"]])
        line = f"| {label.split(' x')[0]} | {r['batch_size']} x {shape} | {r['num_negatives']} | {r['median_step_s']:.4f} | {r['samples_per_s']:.1f} | {r[key]:.0f} | {copied} |"
        if cuda:
            mfu = "-" if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%"
            line += (
                f" {r['achieved_tflops']:.1f} | {mfu} | {r['paper_budget_minutes']:.0f} |"
                if "achieved_tflops" in r
                else " - | - | - |"
            )
        else:
            line += (
                f" {1e3 * r['achieved_tflops']:.1f} | {100 * r['share_of_matmul']:.0f}% |"
                if r.get("share_of_matmul") is not None
                else " - | - |"
            )
        print(line)
    m = report["machine"]
    print(
        f"\n{m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), device {m['device']}{', ' + m['gpu'] if 'gpu' in m else ''}"
    )
    if not cuda:
        print(
            "model GFLOP/s: 3 x forward FLOPs of encoder + context + W_k per step (the InfoNCE scoring not counted) "
            "/ step time; of matmul: that / a 2048 x 2048 fp32 matmul on the same threads"
        )
    if cuda:
        print(
            f"MFU: 3 x forward FLOPs of encoder + context + W_k per step / step time / the device's dense bf16 peak; "
            f"paper budget: {PAPER_WINDOWS / 1e6:.1f} M windows at the measured windows/s"
        )


def bench_data(args: argparse.Namespace) -> dict:
    """Windows per second through the training DataLoader (reads only; compare with samples_per_s of a step)."""
    from torch.utils.data import DataLoader

    from cpc.config import load_config
    from cpc.resources import recipe_path, resolve_data_root
    from cpc.speech.windows import SpeechWindows, WindowSampler, split_corpus

    _check_counts(batches=(args.batches, 1), warmup=(args.warmup, 0))
    config = load_config(recipe_path(args.recipe), args.overrides)
    if config.data.name != "speech":
        raise ValueError(
            f"cpc bench data times the speech loader; {args.recipe} uses data.name={config.data.name} (held in memory, no loader)"
        )
    config.data.root = resolve_data_root(config.data.root)  # the recipes' data/sample, also outside the checkout
    corpus = split_corpus(config.data.root, config.data.window, valid_fraction=0.0)
    sampler = WindowSampler(corpus.train, config.data.window, config.train.batch_size)
    loader = DataLoader(
        SpeechWindows(corpus.train, config.data.window), batch_sampler=sampler, num_workers=config.data.num_workers
    )
    batches = iter(loader)
    for _ in range(args.warmup):
        next(batches)
    start = time.perf_counter()
    for _ in range(args.batches):
        next(batches)
    elapsed = time.perf_counter() - start
    return {
        "benchmark": "data",
        "machine": machine_info("cpu"),
        "recipe": args.recipe,
        "data": config.data.root,
        "num_workers": config.data.num_workers,
        "batch_size": config.train.batch_size,
        "window": config.data.window,
        "batches": args.batches,
        "seconds_per_batch": elapsed / args.batches,
        "windows_per_s": args.batches * config.train.batch_size / elapsed,
    }


def model_flops(model: torch.nn.Module) -> dict:
    """GFLOP per second of 16 kHz audio, counted from the layer list (2 FLOPs per multiply-add).

    Conv layer l: out x in x kernel multiply-adds per output frame, at 16000 / (strides up to l)
    frames per second. Recurrent context: gates x (input + hidden) x hidden per frame and layer
    (GRU 3 gates, LSTM 4). Norms, ReLUs and biases are left out (a few percent at most).
    """
    conv, in_channels, hop = 0.0, 1, 1
    for layer in model.encoder.layers:
        hop *= layer.stride
        conv += SAMPLE_RATE / hop * layer.channels * in_channels * layer.kernel_size
        in_channels = layer.channels
    rnn = getattr(model.context, "rnn", None)
    gates = {torch.nn.GRU: 3, torch.nn.LSTM: 4}.get(type(rnn))
    recurrent = None
    if gates is not None:
        recurrent, input_size = 0.0, rnn.input_size
        for _ in range(rnn.num_layers):
            recurrent += SAMPLE_RATE / model.downsample_rate * gates * (input_size + rnn.hidden_size) * rnn.hidden_size
            input_size = rnn.hidden_size
    return {
        "conv_gflop_per_audio_s": 2 * conv / 1e9,
        "context_gflop_per_audio_s": None if recurrent is None else 2 * recurrent / 1e9,
        "gflop_per_audio_s": (2 * conv + 2 * (recurrent or 0.0)) / 1e9,
    }


def _synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device: str = "cpu", *, size: int = MATMUL_SIZE, runs: int = 3) -> float:
    """Measured fp32 matmul throughput (GFLOP/s) on the current threads: the median of ``runs`` products after one."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device)
    b = torch.randn(size, size, generator=generator).to(device)
    times = []
    for run in range(1 + runs):
        _synchronize(device)
        start = time.perf_counter()
        torch.mm(a, b)
        _synchronize(device)
        if run:
            times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def time_extraction(
    recipe: str, *, batch_size: int, seconds: float, runs: int, warmup: int, device: str, overrides: list[str]
) -> dict:
    """Median seconds for ``extract_features(layer="context")`` on a random (batch_size, seconds x 16000) batch."""
    from cpc.checkpoint import require_modality
    from cpc.config import load_config, to_container
    from cpc.model import build_model
    from cpc.resources import recipe_path

    config = load_config(recipe_path(recipe), overrides)
    require_modality(to_container(config), "speech", "cpc bench extract", recipe)  # it times raw audio
    torch.manual_seed(0)
    model = build_model(config).eval().to(device)
    waveforms = 0.1 * torch.randn(batch_size, int(seconds * SAMPLE_RATE), device=device)  # (B, S)
    times = []
    with torch.inference_mode():
        for run in range(warmup + runs):
            _synchronize(device)
            start = time.perf_counter()
            model.extract_features(waveforms, layer="context")
            _synchronize(device)
            if run >= warmup:
                times.append(time.perf_counter() - start)
    median = statistics.median(times)
    audio_seconds = batch_size * waveforms.shape[1] / SAMPLE_RATE
    return {
        "batch_size": batch_size,
        "seconds": seconds,
        "runs": runs,
        "median_batch_s": median,
        "min_batch_s": min(times),
        "max_batch_s": max(times),
        "real_time_factor": audio_seconds / median,
        "parameters": sum(p.numel() for p in model.parameters()),
        **model_flops(model),
    }


def _extract_target(recipe: str) -> float | None:
    """The real-time target of a shipped recipe, also when it is given by its path."""
    from cpc.resources import recipe_path

    for name, target in EXTRACT_TARGETS.items():
        if recipe == name or recipe_path(recipe).resolve() == recipe_path(name).resolve():
            return target
    return None


def bench_extract(args: argparse.Namespace) -> dict:
    """Real-time factor of feature extraction per recipe, and the fraction of measured matmul throughput it reaches."""
    from cpc.config import load_config
    from cpc.resources import recipe_path
    from cpc.runtime import torch_threads

    recipes = args.recipe or DEFAULT_RECIPES
    _check_counts(runs=(args.runs, 1), warmup=(args.warmup, 0), **{"batch-size": (args.batch_size, 1)})
    if not args.seconds > 0:
        raise ValueError(f"--seconds must be positive, got {args.seconds}")
    if args.threads is not None:
        _check_counts(threads=(args.threads, 1))
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here; use --device cpu")
    for recipe in recipes:  # a missing recipe or a bad override fails here, before any timing
        load_config(recipe_path(recipe), args.overrides)
    with torch_threads(args.threads):
        report = {"benchmark": "extract", "machine": machine_info(args.device), "recipes": {}}
        print("timing a matmul ...", file=sys.stderr, flush=True)
        report["matmul_gflops"] = matmul_gflops(args.device)
        report["matmul_size"] = MATMUL_SIZE
        for recipe in recipes:
            print(f"timing {recipe} ...", file=sys.stderr, flush=True)
            entry = time_extraction(
                recipe,
                batch_size=args.batch_size,
                seconds=args.seconds,
                runs=args.runs,
                warmup=args.warmup,
                device=args.device,
                overrides=args.overrides,
            )
            entry["achieved_gflops"] = entry["gflop_per_audio_s"] * entry["real_time_factor"]
            entry["fraction_of_matmul"] = entry["achieved_gflops"] / report["matmul_gflops"]
            target = entry["target_real_time_factor"] = _extract_target(recipe)
            entry["meets_target"] = None if target is None else entry["real_time_factor"] >= target
            report["recipes"][recipe] = entry
    return report


def print_extract_table(report: dict) -> None:
    header = "| recipe | batch | s/batch (median) | x real time | target | GFLOP per audio s | GFLOP/s | of matmul |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for recipe, r in report["recipes"].items():
        target = r["target_real_time_factor"]
        target = "-" if target is None else f">= {target:g}x ({'met' if r['meets_target'] else 'missed'})"
        print(
            f"| {recipe} | {r['batch_size']} x {r['seconds']:g} s | {r['median_batch_s']:.3f} | {r['real_time_factor']:.1f} | {target} | "
            f"{r['gflop_per_audio_s']:.2f} | {r['achieved_gflops']:.1f} | {100 * r['fraction_of_matmul']:.0f}% |"
        )
    m = report["machine"]
    print(
        f"\nfp32 matmul {report['matmul_size']}x{report['matmul_size']}: {report['matmul_gflops']:.1f} GFLOP/s; "
        f"{m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), device {m['device']}"
        f"{', ' + m['gpu'] if 'gpu' in m else ''}"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmarks (print a table, write JSON)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    train = which.add_parser("train", help="time training steps and peak memory per recipe")
    train.add_argument(
        "--recipe",
        action="append",
        help=f"shipped recipe name or YAML file (repeatable; default: {' and '.join(DEFAULT_RECIPES)})",
    )
    train.add_argument("--json", type=Path, help="write the results here")
    train.add_argument("--steps", type=int, default=5, help="timed steps (the median is reported)")
    train.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    train.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    train.add_argument("--skip-copied", action="store_true", help="do not time the copied-negatives variant")
    train.add_argument(
        "--batch-size",
        type=int,
        action="append",
        help="windows per step (repeatable: one run per size; default: the recipe's)",
    )
    train.add_argument(
        "--data",
        action="store_true",
        help="take each step's batch from the recipe's data source (set data.root) instead of a fixed random batch",
    )
    train.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="also profile each run with torch.profiler: DIR/<recipe>-b<batch>.txt",
    )
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides applied to every recipe")
    train.set_defaults(func=_main)
    data = which.add_parser("data", help="windows per second through the training data loader")
    data.add_argument(
        "--recipe", default="speech/tiny", help="shipped recipe name or YAML file (its data section and batch size)"
    )
    data.add_argument("--json", type=Path, help="write the results here")
    data.add_argument("--batches", type=int, default=200, help="timed batches")
    data.add_argument("--warmup", type=int, default=5, help="untimed batches first (worker start-up)")
    data.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. data.root=PATH data.num_workers=2"
    )
    data.set_defaults(func=_main_data)
    extract = which.add_parser(
        "extract", help="real-time factor of feature extraction per recipe, vs measured matmul throughput"
    )
    extract.add_argument(
        "--recipe",
        action="append",
        help=f"shipped recipe name or YAML file (repeatable; default: {' and '.join(DEFAULT_RECIPES)})",
    )
    extract.add_argument("--json", type=Path, help="write the results here")
    extract.add_argument("--runs", type=int, default=5, help="timed batches (the median is reported)")
    extract.add_argument("--warmup", type=int, default=1, help="untimed batches first")
    extract.add_argument("--batch-size", type=int, default=8, help="utterances per batch")
    extract.add_argument("--seconds", type=float, default=10.0, help="seconds of audio per utterance")
    extract.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own setting)")
    extract.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    extract.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides applied to every recipe")
    extract.set_defaults(func=_main_extract)


def _write_json(path: Path | None, report: dict) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path}")


def _main(args: argparse.Namespace) -> int:
    report = bench_train(args)
    print_table(report)
    _write_json(args.json, report)
    return 0


def _main_data(args: argparse.Namespace) -> int:
    report = bench_data(args)
    print(
        f"| data | workers | batch x window | s/batch | windows/s |\n|---|---|---|---|---|\n"
        f"| {report['data']} | {report['num_workers']} | {report['batch_size']} x {report['window']} | {report['seconds_per_batch']:.4f} | {report['windows_per_s']:.0f} |"
    )
    _write_json(args.json, report)
    return 0


def _main_extract(args: argparse.Namespace) -> int:
    report = bench_extract(args)
    print_extract_table(report)
    _write_json(args.json, report)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        request = json.loads(sys.argv[2])
        print(
            json.dumps(
                time_training_step(
                    request["recipe"],
                    copy_negatives=request["copy_negatives"],
                    steps=request["steps"],
                    warmup=request["warmup"],
                    device=request["device"],
                    overrides=request["overrides"],
                    batch_size=request["batch_size"],
                    with_data=request["with_data"],
                    profile=request["profile"],
                )
            )
        )
    else:
        sys.exit("run benchmarks with `cpc bench ...`")
