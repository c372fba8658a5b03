"""Benchmarks (``cpc bench``): measured, not asserted. Prints a table and writes JSON.

    cpc bench train [--recipe speech/paper --recipe speech/tiny] --json bench.json

For each recipe, times full training steps (forward, InfoNCE, backward, Adam) on a random
batch of the recipe's size (batch_size x window samples, the recipe's negatives), reporting
the median of ``--steps`` steps after ``--warmup`` untimed ones, and the peak memory: the
process's peak resident set size on CPU, ``torch.cuda.max_memory_allocated`` on GPU. The same
step with the negatives *copied* into a (B, T, K, 1+N, C) tensor (as CPC_audio does) is timed
beside it. Each measurement runs in a fresh process so that peak memory is its own. A recipe
is a shipped name (``speech/tiny``, see :mod:`cpc.resources`) or a YAML file.

    cpc bench data --recipe speech/tiny data.root=PATH

times the training DataLoader alone (windows per second), to check it keeps up with the model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)

DEFAULT_RECIPES = ["speech/paper", "speech/tiny"]


def _check_counts(**counts: tuple[int, int]) -> None:
    """Raise ValueError naming the option whose value is below its minimum (``name=(value, minimum)``)."""
    for name, (value, minimum) in counts.items():
        if value < minimum:
            raise ValueError(f"--{name} must be at least {minimum}, got {value}")


def time_training_step(recipe: str, *, copy_negatives: bool, steps: int, warmup: int, device: str, overrides: list[str]) -> dict:
    """Run in the measuring process: median seconds per training step and peak memory."""
    from cpc.config import load_config
    from cpc.infonce import InfoNCE
    from cpc.model import build_model
    from cpc.resources import recipe_path

    config = load_config(recipe_path(recipe), overrides)
    torch.manual_seed(0)
    model = build_model(config)
    if copy_negatives:
        model.criterion = InfoNCE(config.model.loss.num_negatives, config.model.loss.negative_scope, copy_negatives=True)
    model = model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr)
    batch = torch.randn(config.train.batch_size, config.data.window, device=device)  # (B, S)
    generator = torch.Generator(device=device).manual_seed(0)
    baseline_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # torch + model, before any step
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    times = []
    for step in range(warmup + steps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            out = model(batch, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "median_step_s": median,
        "min_step_s": min(times),
        "max_step_s": max(times),
        "steps_timed": steps,
        "samples_per_s": config.train.batch_size / median,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "baseline_rss_mb": baseline_rss_mb,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None,
        "batch_size": config.train.batch_size,
        "window": config.data.window,
        "num_negatives": config.model.loss.num_negatives,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def _measure_in_fresh_process(recipe: str, copy_negatives: bool, args: argparse.Namespace) -> dict:
    from cpc.cli import CommandError

    request = {"recipe": recipe, "copy_negatives": copy_negatives, "steps": args.steps, "warmup": args.warmup, "device": args.device, "overrides": args.overrides}
    result = subprocess.run(
        [sys.executable, "-m", "cpc.bench", "--child", json.dumps(request)], capture_output=True, text=True,
    )
    if result.returncode != 0:
        # Inputs were checked in this process, so this is a failure of the measurement itself
        # (out of memory, a bug): one line here, the child's traceback with --verbose.
        log.debug("measuring process for %s failed:\n%s", recipe, result.stderr)
        last = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit code {result.returncode}"
        raise CommandError(f"benchmark of {recipe} (copy_negatives={copy_negatives}) failed: {last} (rerun with -v for its traceback)")
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
    _check_counts(steps=(args.steps, 1), warmup=(args.warmup, 0))
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here; use --device cpu")
    for recipe in recipes:  # a missing recipe or a bad override fails here, before any timing
        load_config(recipe_path(recipe), args.overrides)
    report = {"benchmark": "train_step", "machine": machine_info(args.device), "recipes": {}}
    for recipe in recipes:
        print(f"timing {recipe} ...", file=sys.stderr, flush=True)
        entry = _measure_in_fresh_process(recipe, False, args)
        if not args.skip_copied:
            copied = _measure_in_fresh_process(recipe, True, args)
            entry["copied_negatives_median_step_s"] = copied["median_step_s"]
            entry["copied_negatives_peak_rss_mb"] = copied["peak_rss_mb"]
            entry["copied_negatives_cuda_peak_mb"] = copied["cuda_peak_mb"]
            entry["speedup_vs_copied"] = copied["median_step_s"] / entry["median_step_s"]
        report["recipes"][recipe] = entry
    return report


def print_table(report: dict) -> None:
    memory = "cuda peak MB" if report["machine"]["device"] == "cuda" else "peak RSS MB"
    key = "cuda_peak_mb" if report["machine"]["device"] == "cuda" else "peak_rss_mb"
    header = f"| recipe | batch x window | N | s/step (median) | samples/s | {memory} | copied: s/step | copied: {memory} | speedup |"
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for recipe, r in report["recipes"].items():
        copied = (
            f"{r['copied_negatives_median_step_s']:.3f} | {r['copied_negatives_' + key]:.0f} | {r['speedup_vs_copied']:.2f}x"
            if "copied_negatives_median_step_s" in r else "- | - | -"
        )
        print(f"| {recipe} | {r['batch_size']} x {r['window']} | {r['num_negatives']} | {r['median_step_s']:.3f} | {r['samples_per_s']:.1f} | {r[key]:.0f} | {copied} |")
    m = report["machine"]
    print(f"\n{m['platform']}, {m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), device {m['device']}{', ' + m['gpu'] if 'gpu' in m else ''}")


def bench_data(args: argparse.Namespace) -> dict:
    """Windows per second through the training DataLoader (reads only; compare with samples_per_s of a step)."""
    from torch.utils.data import DataLoader

    from cpc.config import load_config
    from cpc.data.speech import SpeechWindows, WindowSampler, split_corpus
    from cpc.resources import recipe_path, resolve_data_root

    _check_counts(batches=(args.batches, 1), warmup=(args.warmup, 0))
    config = load_config(recipe_path(args.recipe), args.overrides)
    config.data.root = resolve_data_root(config.data.root)  # the recipes' data/sample, also outside the checkout
    corpus = split_corpus(config.data.root, config.data.window, valid_fraction=0.0)
    sampler = WindowSampler(corpus.train, config.data.window, config.train.batch_size)
    loader = DataLoader(SpeechWindows(corpus.train, config.data.window), batch_sampler=sampler, num_workers=config.data.num_workers)
    batches = iter(loader)
    for _ in range(args.warmup):
        next(batches)
    start = time.perf_counter()
    for _ in range(args.batches):
        next(batches)
    elapsed = time.perf_counter() - start
    return {
        "benchmark": "data", "machine": machine_info("cpu"), "recipe": args.recipe, "data": config.data.root,
        "num_workers": config.data.num_workers, "batch_size": config.train.batch_size, "window": config.data.window,
        "batches": args.batches, "seconds_per_batch": elapsed / args.batches, "windows_per_s": args.batches * config.train.batch_size / elapsed,
    }


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks (print a table, write JSON)", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    which = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    train = which.add_parser("train", help="time training steps and peak memory per recipe")
    train.add_argument("--recipe", action="append", help=f"shipped recipe name or YAML file (repeatable; default: {' and '.join(DEFAULT_RECIPES)})")
    train.add_argument("--json", type=Path, help="write the results here")
    train.add_argument("--steps", type=int, default=5, help="timed steps (the median is reported)")
    train.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    train.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    train.add_argument("--skip-copied", action="store_true", help="do not time the copied-negatives variant")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides applied to every recipe")
    train.set_defaults(func=_main)
    data = which.add_parser("data", help="windows per second through the training data loader")
    data.add_argument("--recipe", default="speech/tiny", help="shipped recipe name or YAML file (its data section and batch size)")
    data.add_argument("--json", type=Path, help="write the results here")
    data.add_argument("--batches", type=int, default=200, help="timed batches")
    data.add_argument("--warmup", type=int, default=5, help="untimed batches first (worker start-up)")
    data.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. data.root=PATH data.num_workers=2")
    data.set_defaults(func=_main_data)


def _main(args: argparse.Namespace) -> int:
    report = bench_train(args)
    print_table(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _main_data(args: argparse.Namespace) -> int:
    report = bench_data(args)
    print(f"| data | workers | batch x window | s/batch | windows/s |\n|---|---|---|---|---|\n"
          f"| {report['data']} | {report['num_workers']} | {report['batch_size']} x {report['window']} | {report['seconds_per_batch']:.4f} | {report['windows_per_s']:.0f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        request = json.loads(sys.argv[2])
        print(json.dumps(time_training_step(
            request["recipe"], copy_negatives=request["copy_negatives"], steps=request["steps"],
            warmup=request["warmup"], device=request["device"], overrides=request["overrides"],
        )))
    else:
        sys.exit("run benchmarks with `cpc bench ...`")
