"""``cpc probe phone|speaker`` and ``cpc abx``: evaluate one feature set on a corpus.

    cpc probe phone   --features CHECKPOINT|mfcc|logmel|logmel80|random --data CORPUS_DIR --json OUT.json [--layer context|encoder] [--hidden 1] [--ctc]
    cpc probe speaker --features ... --data CORPUS_DIR --json OUT.json
    cpc abx           --features ... --data CORPUS_DIR [--item FILE] --json OUT.json
    (all three: [--threads N], torch intra-op threads for CPC features, probe and DTW; default 1)

The corpus folder is read with :func:`cpc.corpus.formats.load_corpus` (``alignments.txt``,
``phones.txt``, ``train_split.txt``, ``test_split.txt`` inside it, or explicit
``--alignments/--phones/--train-split/--test-split`` for a LibriSpeech folder with the CPC
paper's label files). Features are extracted once per (feature set, layer, corpus) and cached
under ``--cache`` (default ``~/.cache/cpc/features``), so the probes and ABX share them.
Each command writes its JSON and a markdown table (``OUT.md``) with the paper's numbers beside.

The functions :func:`evaluate_phone`, :func:`evaluate_speaker` and :func:`evaluate_abx` do the
work and are what the demo calls; the commands only parse arguments.

Threads: the library functions leave torch's thread count alone unless given ``threads``;
these entry points default to :data:`DEFAULT_THREADS` = 1, and ``threads=None`` keeps the
caller's setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from pathlib import Path

from cpc.features import FeatureCache, FeatureError, extract, feature_set

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cpc" / "features"

DEFAULT_THREADS = 1
"""Torch intra-op threads for CPC feature extraction, probe training and ABX's DTW.

These are many small or medium operations; on a shared 2-core machine, intra-op threads
waiting for a busy core cost far more than they gain, so one thread was measured faster
(DTW: 14 s on one thread vs 90 s on two for 550k token pairs; the tiny CPC recipe: 0.5 vs
7.5 s per step). Pass more (``--threads N``) on a machine of your own with idle cores.
"""


def _describe(name: str, layer: str) -> dict:
    """The JSON fields naming a feature set: "features" (what the table shows) and "layer"."""
    from cpc.features import BASELINES

    if name in BASELINES:
        return {"features": name, "layer": None}
    return {"features": "random" if name == "random" else "cpc", "checkpoint": None if name == "random" else str(name), "layer": layer}


def _split(corpus, name: str) -> list[str]:
    if name not in corpus.splits:
        raise FeatureError(f"corpus {corpus.root} has no {name} split (looked for its split file; pass --{name}-split)")
    return corpus.splits[name]


def _features(corpus, name: str, utterances, *, layer: str, architecture, cache: FeatureCache, device: str, progress: bool, threads: int | None):
    features = feature_set(name, layer=layer, architecture=architecture, device=device, threads=threads)
    return extract(features, corpus.files, utterances, cache=cache, corpus_root=corpus.root, progress=progress)


def evaluate_phone(corpus, name: str, *, layer: str = "context", ctc: bool = False, hidden_layers: int = 0, architecture=None,
                   cache: FeatureCache | None = None, device: str = "cpu", progress: bool = True, settings=None,
                   threads: int | None = DEFAULT_THREADS) -> dict:
    """Phone probe (frame accuracy, or PER with ``ctc``) of feature set ``name`` on ``corpus``'s train/test splits.

    ``settings`` (:class:`cpc.eval.probes.ProbeSettings`) defaults to the probe's own with
    ``hidden_layers``; ``threads`` applies to feature extraction and the probe (it replaces
    ``settings.threads``; None: the caller's torch setting).
    """
    from cpc.eval.probes import CTC_SETTINGS, PHONE_SETTINGS, ctc_probe, phone_probe

    if not corpus.labels:
        raise FeatureError(f"corpus {corpus.root} has no phone alignments (alignments.txt or --alignments)")
    train, test = _split(corpus, "train"), _split(corpus, "test")
    started = time.perf_counter()
    features = _features(corpus, name, train + test, layer=layer, architecture=architecture, cache=cache or FeatureCache(None),
                         device=device, progress=progress, threads=threads)
    extracted = time.perf_counter()
    defaults = CTC_SETTINGS if ctc else PHONE_SETTINGS
    settings = dataclasses.replace(settings or dataclasses.replace(defaults, hidden_layers=hidden_layers), threads=threads)
    if ctc:
        result = ctc_probe(features, corpus.labels, train, test, num_classes=corpus.num_phones, settings=settings)
    else:
        result = phone_probe(features, corpus.labels, train, test, num_classes=corpus.num_phones, settings=settings)
    if result["trimmed_frames"]:
        log.info("phone probe: trimmed %d frame(s) at utterance ends to match labels and features", result["trimmed_frames"])
    return {
        "task": "phone_ctc" if ctc else "phone", **_describe(name, layer), **result,
        "corpus": str(corpus.root), "extract_seconds": extracted - started, "probe_seconds": time.perf_counter() - extracted,
    }


def evaluate_speaker(corpus, name: str, *, layer: str = "context", architecture=None, cache: FeatureCache | None = None,
                     device: str = "cpu", progress: bool = True, crop_frames: int = 128, threads: int | None = DEFAULT_THREADS) -> dict:
    """Speaker probe on mean-pooled ``crop_frames`` crops (train split -> test split, same speakers).

    ``threads``: torch intra-op threads for feature extraction and the probe (None: the caller's setting).
    """
    from cpc.eval.probes import SPEAKER_SETTINGS, speaker_probe

    train, test = _split(corpus, "train"), _split(corpus, "test")
    started = time.perf_counter()
    features = _features(corpus, name, train + test, layer=layer, architecture=architecture, cache=cache or FeatureCache(None),
                         device=device, progress=progress, threads=threads)
    extracted = time.perf_counter()
    settings = dataclasses.replace(SPEAKER_SETTINGS, threads=threads)
    result = speaker_probe(features, corpus.speakers, train, test, crop_frames=crop_frames, settings=settings)
    return {
        "task": "speaker", **_describe(name, layer), **result,
        "corpus": str(corpus.root), "extract_seconds": extracted - started, "probe_seconds": time.perf_counter() - extracted,
    }


def evaluate_abx(corpus, name: str, item_path, *, layer: str = "context", architecture=None, cache: FeatureCache | None = None,
                 device: str = "cpu", progress: bool = True, max_per_group: int = 10, max_x_speakers: int = 5, seed: int = 0,
                 threads: int | None = DEFAULT_THREADS) -> dict:
    """Within/across-speaker ABX error (%) of feature set ``name`` on the tokens of an item file.

    ``threads``: torch intra-op threads for feature extraction and the DTW (None: the caller's setting).
    """
    from cpc.corpus.formats import read_item
    from cpc.eval.abx import abx_error

    items = read_item(item_path)
    unknown = sorted({row.file for row in items} - corpus.files.keys())
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" ... ({len(unknown)} in all)" if len(unknown) > 10 else "")
        raise FeatureError(f"item file {item_path} references {len(unknown)} file(s) not in corpus {corpus.root}: {shown}")
    started = time.perf_counter()
    features = _features(corpus, name, sorted({row.file for row in items}), layer=layer, architecture=architecture,
                         cache=cache or FeatureCache(None), device=device, progress=progress, threads=threads)
    extracted = time.perf_counter()
    result = abx_error(features, items, max_per_group=max_per_group, max_x_speakers=max_x_speakers, seed=seed, threads=threads)
    return {
        "task": "abx", **_describe(name, layer), **result, "item_file": str(item_path),
        "corpus": str(corpus.root), "extract_seconds": extracted - started, "abx_seconds": time.perf_counter() - extracted,
    }


# ----------------------------------------------------------------------------- commands


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, help="mfcc | logmel | logmel80 | random | a checkpoint path")
    parser.add_argument("--data", required=True, help="corpus folder (built by `cpc data synth`, or LibriSpeech)")
    parser.add_argument("--layer", choices=("context", "encoder"), default="context", help="CPC layer (checkpoint and random only)")
    parser.add_argument("--architecture", help="for --features random: checkpoint or recipe whose architecture to initialise (default: the paper's)")
    parser.add_argument("--alignments", help="frame phone labels (default: DATA/alignments.txt)")
    parser.add_argument("--phones", help="phone inventory (default: DATA/phones.txt)")
    parser.add_argument("--train-split", help="training utterance ids (default: DATA/train_split.txt)")
    parser.add_argument("--test-split", help="test utterance ids (default: DATA/test_split.txt)")
    parser.add_argument("--json", required=True, help="where to write the result (a markdown table goes next to it as .md)")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help=f"feature cache folder (default {DEFAULT_CACHE})")
    parser.add_argument("--no-cache", action="store_true", help="extract features without reading or writing the cache")
    parser.add_argument("--device", default="cpu", help="where CPC features are extracted (cpu, cuda)")
    parser.add_argument("--threads", type=_positive, default=DEFAULT_THREADS,
                        help=f"torch intra-op threads for CPC features, probe and DTW (default {DEFAULT_THREADS}: measured fastest on a shared 2-core machine)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of threads, got {text}")
    return value


def _load(args):
    from cpc.corpus.formats import load_corpus

    return load_corpus(args.data, alignments=args.alignments, phones=args.phones, train_split=args.train_split, test_split=args.test_split)


def _options(args) -> dict:
    return {
        "layer": args.layer, "architecture": args.architecture, "device": args.device, "threads": args.threads,
        "cache": FeatureCache(None if args.no_cache else args.cache),
    }


def _write(result: dict, path: str) -> None:
    from cpc.eval.report import results_table

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    table = results_table([result])
    path.with_suffix(".md").write_text(table)
    print(table, end="")
    log.info("wrote %s and %s", path, path.with_suffix(".md"))


def _phone(args) -> int:
    if args.hidden not in (0, 1):
        raise FeatureError(f"--hidden {args.hidden}: expected 0 (linear) or 1")
    _write(evaluate_phone(_load(args), args.features, ctc=args.ctc, hidden_layers=args.hidden, **_options(args)), args.json)
    return 0


def _speaker(args) -> int:
    _write(evaluate_speaker(_load(args), args.features, crop_frames=args.crop_frames, **_options(args)), args.json)
    return 0


def _abx(args) -> int:
    corpus = _load(args)
    item = Path(args.item) if args.item else corpus.root / "abx" / "test.item"
    _write(evaluate_abx(corpus, args.features, item, max_per_group=args.max_per_group, max_x_speakers=args.max_x_speakers, seed=args.seed, **_options(args)), args.json)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    probe = subparsers.add_parser("probe", help="phone / speaker probes on frozen features", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = probe.add_subparsers(dest="probe", required=True, metavar="PROBE")
    phone = kinds.add_parser("phone", help="frame phone accuracy (linear or 1 hidden layer), or PER with --ctc")
    _common(phone)
    phone.add_argument("--hidden", type=int, default=0, help="hidden layers: 0 = linear (the paper's protocol), 1 = one ReLU layer")
    phone.add_argument("--ctc", action="store_true", help="CTC on the collapsed phone sequence, greedy decoding, report PER")
    phone.set_defaults(func=_phone)
    speaker = kinds.add_parser("speaker", help="speaker accuracy of a linear classifier on mean-pooled 1.28 s crops")
    _common(speaker)
    speaker.add_argument("--crop-frames", type=int, default=128, help="crop length in 10 ms frames (paper: 128 = 1.28 s)")
    speaker.set_defaults(func=_speaker)

    abx = subparsers.add_parser("abx", help="within/across-speaker ABX error (ZeroSpeech protocol)", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(abx)
    abx.add_argument("--item", help="ABX item file (default: DATA/abx/test.item)")
    abx.add_argument("--max-per-group", type=int, default=10, help="tokens kept per (context, phone, speaker)")
    abx.add_argument("--max-x-speakers", type=int, default=5, help="other speakers drawn for X (across)")
    abx.add_argument("--seed", type=int, default=0, help="subsampling seed")
    abx.set_defaults(func=_abx)


if __name__ == "__main__":
    import sys

    import cpc.cli

    cpc.cli.COMMAND_MODULES += [name for name in ("cpc.eval.cli", "cpc.eval.demo") if name not in cpc.cli.COMMAND_MODULES]
    sys.exit(cpc.cli.main())
