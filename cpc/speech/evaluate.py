"""``cpc probe phone|speaker`` and ``cpc abx``: evaluate one feature set on a corpus.

    cpc probe phone   --features CHECKPOINT|mfcc|logmel|logmel80|random --data CORPUS_DIR [--json OUT.json] [--layer context|encoder] [--hidden 1] [--ctc]
    cpc probe speaker --features ... --data CORPUS_DIR [--json OUT.json] [--crop-frames 128]
    cpc abx           --features ... --data CORPUS_DIR [--item FILE] [--json OUT.json]
    (all three: [--threads N], torch intra-op threads for CPC features, probe and DTW; default 1)

The corpus folder is read with :func:`cpc.speech.corpus.formats.load_corpus` (``alignments.txt``,
``phones.txt``, ``train_split.txt``, ``test_split.txt`` inside it, or explicit
``--alignments/--phones/--train-split/--test-split`` for a LibriSpeech folder with the CPC
paper's label files). Features are extracted once per (feature set, layer, corpus) and cached
under ``--cache`` (default ``~/.cache/cpc/features``), so the probes and ABX share them; an
utterance whose audio file changed since is recomputed (see :mod:`cpc.speech.features`).
Each command prints a markdown table with the paper's numbers beside, and with ``--json``
writes the result there and the table next to it (``OUT.md``).

Bad input fails before any work, on one line: an unusable ``--device`` (no CUDA device), an
output path that cannot be written, non-positive counts. The table is printed even when
writing the files fails.

The functions :func:`evaluate_phone`, :func:`evaluate_speaker` and :func:`evaluate_abx` do the
work and are what the demo calls; the commands only parse arguments.

Threads: the library functions leave torch's thread count alone unless given ``threads``;
these entry points default to :data:`DEFAULT_THREADS` = 1, and ``threads=None`` keeps the
caller's setting.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from cpc import registry
from cpc.cli import CommandError
from cpc.speech.abx import DEFAULT_SEED
from cpc.speech.features import FeatureCache, FeatureError, check_device, extract, feature_set

log = logging.getLogger(__name__)


class ArgumentError(CommandError, ValueError):
    """Bad command-line input, reported on one line. Also a ValueError: under ``python -m cpc.cli`` the
    handler catches ``__main__.CommandError``, another class than ``cpc.cli.CommandError``, but still ValueError."""


DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cpc" / "features"

DEFAULT_THREADS = 1
"""Torch intra-op threads for CPC feature extraction, probe training and ABX's DTW.

These are many small or medium operations; on a shared machine, intra-op threads waiting for
a busy core cost far more than they gain, so one thread was measured faster
(benchmarks/README.md). Pass more (``--threads N``) on a machine of your own with idle cores.
"""


def _describe(name: str, layer: str) -> dict:
    """The JSON fields naming a feature set: "features" (what the table shows) and "layer"."""
    from cpc.speech.features import BASELINES

    if name in BASELINES:
        return {"features": name, "layer": None}
    return {
        "features": "random" if name == "random" else "cpc",
        "checkpoint": None if name == "random" else str(name),
        "layer": layer,
    }


def _split(corpus, name: str) -> list[str]:
    if name not in corpus.splits:
        raise FeatureError(f"corpus {corpus.root} has no {name} split (no {name}_split.txt in it)")
    return corpus.splits[name]


def _features(
    corpus,
    name: str,
    utterances,
    *,
    layer: str,
    architecture,
    cache: FeatureCache,
    device: str,
    progress: bool,
    threads: int | None,
    what: str,
):
    features = feature_set(name, layer=layer, architecture=architecture, device=device, threads=threads, what=what)
    return extract(features, corpus.files, utterances, cache=cache, corpus_root=corpus.root, progress=progress)


def evaluate_phone(
    corpus,
    name: str,
    *,
    layer: str = "context",
    ctc: bool = False,
    hidden_layers: int = 0,
    architecture=None,
    cache: FeatureCache | None = None,
    device: str = "cpu",
    progress: bool = True,
    settings=None,
    threads: int | None = DEFAULT_THREADS,
) -> dict:
    """Phone probe (frame accuracy, or PER with ``ctc``) of feature set ``name`` on ``corpus``'s train/test splits.

    ``settings`` (:class:`cpc.speech.probes.ProbeSettings`) defaults to the probe's own with
    ``hidden_layers``; ``threads`` applies to feature extraction and the probe (it replaces
    ``settings.threads``; None: the caller's torch setting).
    """
    from cpc.speech.probes import CTC_SETTINGS, PHONE_SETTINGS, ctc_probe, phone_probe

    if not corpus.labels:
        raise FeatureError(f"corpus {corpus.root} has no phone alignments (no alignments.txt in it)")
    train, test = _split(corpus, "train"), _split(corpus, "test")
    started = time.perf_counter()
    features = _features(
        corpus,
        name,
        train + test,
        layer=layer,
        architecture=architecture,
        cache=cache or FeatureCache(None),
        device=device,
        progress=progress,
        threads=threads,
        what="cpc probe phone --ctc" if ctc else "cpc probe phone",
    )
    extracted = time.perf_counter()
    defaults = CTC_SETTINGS if ctc else PHONE_SETTINGS
    settings = dataclasses.replace(
        settings or dataclasses.replace(defaults, hidden_layers=hidden_layers), threads=threads
    )
    if ctc:
        result = ctc_probe(features, corpus.labels, train, test, num_classes=corpus.num_phones, settings=settings)
    else:
        result = phone_probe(features, corpus.labels, train, test, num_classes=corpus.num_phones, settings=settings)
    if result["trimmed_frames"]:
        log.info(
            "phone probe: trimmed %d frame(s) at utterance ends to match labels and features", result["trimmed_frames"]
        )
    return {
        "task": "phone_ctc" if ctc else "phone",
        **_describe(name, layer),
        **result,
        "corpus": str(corpus.root),
        "extract_seconds": extracted - started,
        "probe_seconds": time.perf_counter() - extracted,
    }


def evaluate_speaker(
    corpus,
    name: str,
    *,
    layer: str = "context",
    architecture=None,
    cache: FeatureCache | None = None,
    device: str = "cpu",
    progress: bool = True,
    crop_frames: int = 128,
    threads: int | None = DEFAULT_THREADS,
) -> dict:
    """Speaker probe on mean-pooled ``crop_frames`` crops (train split -> test split, same speakers).

    ``threads``: torch intra-op threads for feature extraction and the probe (None: the caller's setting).
    """
    from cpc.speech.probes import SPEAKER_SETTINGS, speaker_probe

    train, test = _split(corpus, "train"), _split(corpus, "test")
    started = time.perf_counter()
    features = _features(
        corpus,
        name,
        train + test,
        layer=layer,
        architecture=architecture,
        cache=cache or FeatureCache(None),
        device=device,
        progress=progress,
        threads=threads,
        what="cpc probe speaker",
    )
    extracted = time.perf_counter()
    settings = dataclasses.replace(SPEAKER_SETTINGS, threads=threads)
    result = speaker_probe(features, corpus.speakers, train, test, crop_frames=crop_frames, settings=settings)
    return {
        "task": "speaker",
        **_describe(name, layer),
        **result,
        "corpus": str(corpus.root),
        "extract_seconds": extracted - started,
        "probe_seconds": time.perf_counter() - extracted,
    }


def evaluate_abx(
    corpus,
    name: str,
    item_path,
    *,
    layer: str = "context",
    architecture=None,
    cache: FeatureCache | None = None,
    device: str = "cpu",
    progress: bool = True,
    max_per_group: int = 10,
    max_x_speakers: int = 5,
    seed: int = DEFAULT_SEED,
    threads: int | None = DEFAULT_THREADS,
) -> dict:
    """Within/across-speaker ABX error (%) of feature set ``name`` on the tokens of an item file.

    ``threads``: torch intra-op threads for feature extraction and the DTW (None: the caller's setting).
    ``seed``: of the draws (default the reference's, :data:`cpc.speech.abx.DEFAULT_SEED`). Item rows
    outside their audio (onset before 0, offset past the end) are rejected before any feature is
    extracted, with a :class:`FeatureError` naming the item file's line.
    """
    from cpc.speech.abx import FRAMES_PER_SECOND, abx_error, check_item_times
    from cpc.speech.corpus.formats import FRAME_SAMPLES, read_item

    items = read_item(item_path)
    if not items:
        raise FeatureError(f"item file {item_path} has no rows")
    unknown = sorted({row.file for row in items} - corpus.files.keys())
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" ... ({len(unknown)} in all)" if len(unknown) > 10 else "")
        raise FeatureError(
            f"item file {item_path} references {len(unknown)} file(s) not in corpus {corpus.root}: {shown}"
        )
    # Against the audio's frames on the label grid (what the features have, to a frame), with abx_error's 2-frame tolerance.
    durations = {row.file: corpus.files[row.file].num_samples // FRAME_SAMPLES / FRAMES_PER_SECOND for row in items}
    check_item_times(
        items, durations, tolerance=2 / FRAMES_PER_SECOND, rows=str(item_path), line_numbers=_item_lines(item_path)
    )
    started = time.perf_counter()
    features = _features(
        corpus,
        name,
        sorted({row.file for row in items}),
        layer=layer,
        architecture=architecture,
        cache=cache or FeatureCache(None),
        device=device,
        progress=progress,
        threads=threads,
        what="cpc abx",
    )
    extracted = time.perf_counter()
    result = abx_error(
        features, items, max_per_group=max_per_group, max_x_speakers=max_x_speakers, seed=seed, threads=threads
    )
    return {
        "task": "abx",
        **_describe(name, layer),
        **result,
        "item_file": str(item_path),
        "corpus": str(corpus.root),
        "extract_seconds": extracted - started,
        "abx_seconds": time.perf_counter() - extracted,
    }


def _item_lines(path) -> list[int]:
    """Line numbers of the rows :func:`cpc.speech.corpus.formats.read_item` returns (it skips blank lines and a header on line 1)."""
    lines = []
    with open(path) as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()
            if fields and not (line_number == 1 and fields[0].startswith("#")):
                lines.append(line_number)
    return lines


# ----------------------------------------------------------------------------- commands

PROBE_DESCRIPTION = """\
Train a probe on frozen features and report its test score:

  phone    frame phone accuracy of a linear classifier (the CPC paper's protocol),
           or one hidden layer (--hidden 1), or phone error rate with CTC (--ctc)
  speaker  speaker accuracy of a linear classifier on mean-pooled 1.28 s crops

The corpus folder holds alignments.txt, phones.txt, train_split.txt and test_split.txt
(as `cpc data synth` writes them); pass --alignments, --phones, --train-split and
--test-split for other files. Features are cached under --cache and reused while the
checkpoint and the audio files are unchanged. The result table is printed; --json
also writes it as JSON, with a markdown table next to it (OUT.md).

Example:
  cpc probe phone --features mfcc --data data/sample
  cpc probe speaker --features runs/tiny/checkpoints/last.pt --data data/sample --json speaker.json
"""

ABX_DESCRIPTION = """\
Within- and across-speaker ABX phone discrimination error (ZeroSpeech protocol): for
tokens A and X of one phone and B of another, in the same context, is X closer to A
than to B? Distance: frame-wise angle between feature vectors, aligned by DTW. The
protocol and its defaults are those of the ZeroSpeech reference (zerospeech-libriabx2,
"within context"), which gives the same scores on the same features (see docs/abx.md).

Tokens come from an item file (default DATA/abx/test.item; header
"#file onset offset #phone prev-phone next-phone speaker", times in seconds). Rows
must lie inside their audio file: an onset before 0 or an offset more than 20 ms past
the end is an error naming the line; a token that covers fewer than two frame centres
(all under 10 ms, some under 20 ms) has no frame and is left out, as in the reference. The table gives the number of cells (context x
speaker x phone pair) behind each score; below 30 a warning says the score is not a
meaningful measurement. The result table is printed; --json also writes it as JSON,
with a markdown table next to it (OUT.md).

Example:
  cpc abx --features mfcc --data data/sample
"""


def _check_arguments(args, *, counts: dict[str, int]) -> None:
    """Fail before any work, on one line: ``counts`` maps an option to a value that must be >= the minimum."""
    minimum = {"--max-x-speakers": 0, "--max-per-group": 2}
    for option, value in {"--threads": args.threads, **counts}.items():
        if value < minimum.get(option, 1):
            raise ArgumentError(
                f"{option} {value}: expected {'a positive number' if option not in minimum else f'{minimum[option]} or more'}"
            )
    check_device(args.device)
    if args.json:
        from cpc.safe_io import refuse_input_as_output

        inputs = [
            args.features,
            args.architecture,
            getattr(args, "item", None),
            args.alignments,
            args.phones,
            args.train_split,
            args.test_split,
        ]
        for output in (args.json, Path(args.json).with_suffix(".md")):
            refuse_input_as_output("--json", output, [path for path in inputs if path and Path(path).is_file()])
        _check_writable(Path(args.json))


def _check_writable(path: Path) -> None:
    """Raise :class:`ArgumentError` when the JSON or its .md could not be written (checked before the work is done)."""
    for target in (path, path.with_suffix(".md")):
        if target.is_dir():
            raise ArgumentError(
                f"--json {path}: {target} is a directory; give a file name such as {target / 'result.json'}"
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for target in (path, path.with_suffix(".md")):
            if target.exists() and not os.access(target, os.W_OK):
                raise PermissionError(f"{target} is not writable")
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as error:
        raise ArgumentError(f"--json {path}: cannot write in {path.parent} ({error.strerror or error})") from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", required=True, help="mfcc | logmel | logmel80 | random | a checkpoint path")
    parser.add_argument("--data", required=True, help="corpus folder (built by `cpc data synth`, or LibriSpeech)")
    parser.add_argument(
        "--layer", choices=("context", "encoder"), default="context", help="CPC layer (checkpoint and random only)"
    )
    parser.add_argument(
        "--architecture",
        help="for --features random: checkpoint or recipe whose architecture to initialise (default: the paper's)",
    )
    parser.add_argument("--alignments", help="frame phone labels (default: DATA/alignments.txt)")
    parser.add_argument("--phones", help="phone inventory (default: DATA/phones.txt)")
    parser.add_argument("--train-split", help="training utterance ids (default: DATA/train_split.txt)")
    parser.add_argument("--test-split", help="test utterance ids (default: DATA/test_split.txt)")
    parser.add_argument(
        "--json", help="also write the result there (and the table next to it as .md); the table is printed either way"
    )
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help=f"feature cache folder (default {DEFAULT_CACHE})")
    parser.add_argument("--no-cache", action="store_true", help="extract features without reading or writing the cache")
    parser.add_argument("--device", default="cpu", help="where CPC features are extracted (cpu, cuda)")
    parser.add_argument(
        "--threads",
        type=int,
        default=DEFAULT_THREADS,
        help=f"torch intra-op threads for CPC features, probe and DTW (default {DEFAULT_THREADS}: measured fastest on a shared 2-core machine)",
    )


def _load(args):
    from cpc.speech.corpus.formats import load_corpus

    return load_corpus(
        args.data,
        alignments=args.alignments,
        phones=args.phones,
        train_split=args.train_split,
        test_split=args.test_split,
    )


def _options(args) -> dict:
    return {
        "layer": args.layer,
        "architecture": args.architecture,
        "device": args.device,
        "threads": args.threads,
        "cache": FeatureCache(None if args.no_cache else args.cache),
    }


def _write(result: dict, path: str | None) -> None:
    """Print the table; with ``path``, write the JSON there and the table next to it (``.md``)."""
    from cpc.safe_io import write_atomic
    from cpc.speech.report import results_table

    table = results_table([result])
    print(table, end="", flush=True)  # first: whatever happens to the files, the numbers are on the screen
    if path is None:
        return
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(result, indent=2) + "\n")
        write_atomic(path.with_suffix(".md"), table)
    except OSError as error:
        raise ArgumentError(
            f"--json {path}: could not write the result ({error.strerror or error}); the table above has it"
        ) from None
    log.info("wrote %s and %s", path, path.with_suffix(".md"))


def _phone(args) -> int:
    _check_arguments(args, counts={})
    if args.hidden not in (0, 1):
        raise ArgumentError(f"--hidden {args.hidden}: expected 0 (linear) or 1")
    corpus = _load(args)
    if not corpus.labels:
        raise ArgumentError(
            f"corpus {corpus.root} has no phone alignments: no alignments.txt in it; pass --alignments FILE"
        )
    _check_splits(corpus)
    _write(evaluate_phone(corpus, args.features, ctc=args.ctc, hidden_layers=args.hidden, **_options(args)), args.json)
    return 0


def _speaker(args) -> int:
    _check_arguments(args, counts={"--crop-frames": args.crop_frames})
    corpus = _load(args)
    _check_splits(corpus)
    _write(evaluate_speaker(corpus, args.features, crop_frames=args.crop_frames, **_options(args)), args.json)
    return 0


def _check_splits(corpus) -> None:
    for name in ("train", "test"):
        if name not in corpus.splits:
            raise ArgumentError(
                f"corpus {corpus.root} has no {name} split: no {name}_split.txt in it; pass --{name}-split FILE"
            )


def _abx(args) -> int:
    _check_arguments(args, counts={"--max-per-group": args.max_per_group, "--max-x-speakers": args.max_x_speakers})
    corpus = _load(args)
    item = Path(args.item) if args.item else corpus.root / "abx" / "test.item"
    if not args.item and not item.is_file():
        raise ArgumentError(f"corpus {corpus.root} has no ABX item file (abx/test.item); pass --item FILE")
    _write(
        evaluate_abx(
            corpus,
            args.features,
            item,
            max_per_group=args.max_per_group,
            max_x_speakers=args.max_x_speakers,
            seed=args.seed,
            **_options(args),
        ),
        args.json,
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    probe = subparsers.add_parser(
        "probe",
        help="phone / speaker probes on frozen features",
        description=PROBE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = probe.add_subparsers(dest="probe", required=True, metavar="PROBE")
    phone = kinds.add_parser(
        "phone",
        help="frame phone accuracy (linear or 1 hidden layer), or PER with --ctc",
        description="Frame phone accuracy of a probe on frozen features (test split), or phone error rate with --ctc.",
    )
    _common(phone)
    phone.add_argument(
        "--hidden", type=int, default=0, help="hidden layers: 0 = linear (the paper's protocol), 1 = one ReLU layer"
    )
    phone.add_argument(
        "--ctc", action="store_true", help="CTC on the collapsed phone sequence, greedy decoding, report PER"
    )
    phone.set_defaults(func=_phone)
    speaker = kinds.add_parser(
        "speaker",
        help="speaker accuracy of a linear classifier on mean-pooled 1.28 s crops",
        description="Speaker accuracy of a linear classifier on mean-pooled crops of frozen features (train split -> test split).",
    )
    _common(speaker)
    speaker.add_argument(
        "--crop-frames", type=int, default=128, help="crop length in 10 ms frames, at least 1 (paper: 128 = 1.28 s)"
    )
    speaker.set_defaults(func=_speaker)
    for module in registry.probes().values():  # the other modalities' probes (cpc probe image, cpc probe text)
        importlib.import_module(module).register_probe(kinds)

    abx = subparsers.add_parser(
        "abx",
        help="within/across-speaker ABX error (ZeroSpeech protocol)",
        description=ABX_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(abx)
    abx.add_argument("--item", help="ABX item file (default: DATA/abx/test.item)")
    abx.add_argument(
        "--max-per-group",
        type=int,
        default=10,
        help="tokens drawn per (context, phone, speaker) for each cell; at least 2 (the reference's max_size_group)",
    )
    abx.add_argument(
        "--max-x-speakers",
        type=int,
        default=5,
        help="other speakers drawn for X (across; the reference's max_x_across); 0: within speaker only",
    )
    abx.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="seed of the draws (default: %(default)s, the reference's)"
    )
    abx.set_defaults(func=_abx)


if __name__ == "__main__":
    import sys

    import cpc.cli

    cpc.cli.COMMAND_MODULES += [
        name for name in ("cpc.speech.evaluate", "cpc.eval.demo") if name not in cpc.cli.COMMAND_MODULES
    ]
    sys.exit(cpc.cli.main())
