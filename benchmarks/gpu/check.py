"""Checks and small measurements of the GPU paths, run on the device before the benchmark
(``benchmarks/gpu/run.sh``); they also run on the CPU (``--device cpu``) at smaller sizes.

1. Blocked scoring (cpc.infonce.score_candidates) equals one unblocked block, forward and
   gradients, and its peak memory grows linearly with the batch where one block's grows
   quadratically.
2. ``batch_shared`` scores (cpc.infonce.score_shared) equal the generic scores of the same candidates.
3. The corpus held on the device (cpc.speech.resident) cuts the windows the loader would read
   (same file, same offset) and how fast it cuts them.

Prints one line per check and writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from cpc.infonce import sample_candidates, score_candidates, score_shared


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp(min=1e-30))


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def scoring(
    device: str, batch_size: int, frames: int = 128, steps: int = 12, channels: int = 512, negatives: int = 128
) -> dict:
    """Blocked vs one block on the same candidates: errors, and peak memory of forward + backward."""
    generator = torch.Generator(device=device).manual_seed(batch_size)
    predictions = torch.randn(batch_size, frames, steps, channels, device=device, generator=generator)
    latents = torch.randn(batch_size, frames, channels, device=device, generator=generator)
    lengths = torch.full((batch_size,), frames, device=device)
    sample = sample_candidates(
        predictions, latents, lengths, generator, offsets=None, num_negatives=negatives, negative_scope="batch"
    )
    result = {"batch_size": batch_size}
    outputs = {}
    for name, block in (("blocked", 2**26), ("one_block", 2**62)):
        p, z = predictions.clone().requires_grad_(), latents.clone().requires_grad_()
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() if device == "cuda" else 0
        scores = score_candidates(p, z, sample.candidates, block_elements=block)
        weights = torch.randn(scores.shape, device=device, generator=torch.Generator(device=device).manual_seed(1))
        (scores * weights).sum().backward()
        sync(device)
        outputs[name] = (scores.detach(), p.grad, z.grad)
        if device == "cuda":
            result[f"{name}_peak_mb"] = (torch.cuda.max_memory_allocated() - base) / 2**20
        del p, z, scores
    for index, what in enumerate(("scores", "grad_predictions", "grad_latents")):
        result[f"{what}_relative_error"] = relative_error(outputs["blocked"][index], outputs["one_block"][index])
    return result


def shared(device: str, batch_size: int = 16) -> dict:
    generator = torch.Generator(device=device).manual_seed(0)
    predictions = torch.randn(batch_size, 128, 12, 256, device=device, generator=generator)
    latents = torch.randn(batch_size, 128, 256, device=device, generator=generator)
    lengths = torch.full((batch_size,), 128, device=device)
    sample = sample_candidates(
        predictions, latents, lengths, generator, offsets=None, num_negatives=128, negative_scope="batch_shared"
    )
    fast = score_shared(sample.predictions, sample.latents, sample.candidates, sample.shared)
    generic = score_candidates(sample.predictions, sample.latents, sample.candidates)
    negatives = sample.candidates[..., 1:]
    return {
        "relative_error": relative_error(fast, generic),
        "positive_never_a_negative": bool((negatives != sample.candidates[..., :1]).all()),
        "distinct_negatives_per_row": bool((negatives.sort(-1).values.diff(dim=-1) > 0).all()),
    }


def resident(device: str, root: str, batch_size: int) -> dict:
    from cpc.config import load_config
    from cpc.speech.audio import read_audio
    from cpc.speech.resident import ResidentSpeechData
    from cpc.speech.windows import split_corpus

    config = load_config(
        "recipes/speech/paper.yaml", [f"data.root={root}", f"train.batch_size={batch_size}", "data.loading=device"]
    )
    source = ResidentSpeechData(config, device=torch.device(device))
    starts = source.window_starts(0).cpu().numpy()
    file_start = source.file_start.cpu().numpy()
    # Which file and offset each window is, and the loader's read of it (16-bit quantised).
    kept = sorted(split_corpus(root, source.window, valid_fraction=0.05, seed=0).train, key=lambda f: f.speaker)
    same = True
    for start in starts[:8]:
        index = int(np.searchsorted(file_start, start, side="right") - 1)
        offset = int(start - file_start[index])
        wave = read_audio(kept[index].path, offset, offset + source.window)
        expected = np.clip(np.round(wave * 32768.0), -32768, 32767) / 32768.0
        same &= bool(
            np.array_equal(
                source.audio[start : start + source.window].float().cpu().numpy() / 32768.0, expected.astype(np.float32)
            )
        )
    times = []
    for step in range(60):
        sync(device)
        begin = time.perf_counter()
        source.batch(step)
        sync(device)
        times.append(time.perf_counter() - begin)
    median = statistics.median(times[10:])
    return {
        "windows_match_files": same,
        "batch_size": batch_size,
        "median_batch_s": median,
        "windows_per_s": batch_size / median,
        "corpus_hours": len(source.audio) / 16000 / 3600,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--root", default="data/sample")
    parser.add_argument("--json")
    args = parser.parse_args()
    sizes = (8, 32, 64) if args.device == "cuda" else (2, 4)
    report = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "torch": torch.__version__,
        "scoring": [scoring(args.device, size) for size in sizes],
        "shared": shared(args.device),
        "resident": resident(args.device, args.root, 64 if args.device == "cuda" else 8),
    }
    for row in report["scoring"]:
        print("scoring", json.dumps(row))
    print("shared", json.dumps(report["shared"]))
    print("resident", json.dumps(report["resident"]))
    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=2)


if __name__ == "__main__":
    main()
