"""``cpc data synth``: the command line over :func:`cpc.corpus.synth.build_corpus`.

Also runnable on its own: ``python -m cpc.corpus.cli synth --out DIR --hours H``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

__all__ = ["register", "main"]


def _synth(args: argparse.Namespace) -> int:
    from cpc.cli import CommandError
    from cpc.corpus.synth import MissingToolError, build_corpus

    try:
        summary = build_corpus(args.out, args.hours, seed=args.seed, workers=args.workers, overwrite=args.overwrite)
    except MissingToolError as error:
        raise CommandError(str(error)) from None
    print(json.dumps({key: summary[key] for key in ("hours", "num_utterances", "num_speakers", "split_sizes")}))
    return 0


def register(subparsers) -> None:
    """Add ``data`` (with its ``synth`` subcommand) to the ``cpc`` command line."""
    data = subparsers.add_parser("data", help="build or inspect speech corpora")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    synth = commands.add_parser(
        "synth",
        help="synthesise a labelled multi-speaker corpus with Festival and espeak-ng",
        description="Synthesise English speech (LibriSpeech layout, 16 kHz FLAC) with 10 ms phone labels, "
        "speakers, train/test splits and an ABX item file. Needs: apt-get install festival festvox-kallpc16k "
        "festvox-kdlpc16k festvox-us-slt-hts espeak-ng bible-kjv",
    )
    synth.add_argument("--out", required=True, help="output folder: absent, empty, or an unfinished (interrupted) build, which is rebuilt")
    synth.add_argument("--overwrite", action="store_true", help="delete a finished corpus in --out and build it again")
    synth.add_argument("--hours", type=float, required=True, help="approximate hours of audio to build")
    synth.add_argument("--seed", type=int, default=0, help="random seed (speakers, sentences, splits)")
    synth.add_argument("--workers", type=int, default=2, help="parallel synthesis processes")
    synth.set_defaults(func=_synth)


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point with the same error handling as ``cpc``."""
    from cpc.cli import CommandError

    parser = argparse.ArgumentParser(prog="python -m cpc.corpus.cli")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register(subparsers)
    # Make "python -m cpc.corpus.cli synth ..." work: the subcommand name is "data synth".
    args = parser.parse_args(["data", *(argv if argv is not None else sys.argv[1:])])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
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
