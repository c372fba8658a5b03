"""The ``cpc`` command line: a thin layer over functions a user can call from Python.

Each command lives in the module that implements it and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` (called with the parsed arguments). Add a new
command by adding its module to ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMAND_MODULES = [
    "cpc.train",
    "cpc.bench",
    "cpc.speech.corpus.cli",
    "cpc.speech.evaluate",
    "cpc.eval.demo",
    "cpc.eval.compare",
    "cpc.extract",
    "cpc.export",
    "cpc.speech.cpc_audio",
]


class CommandError(Exception):
    """An error to report on one line, without a traceback (bad input, not a bug)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cpc", description="Contrastive Predictive Coding toolkit.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    # Overrides (key=value) may come anywhere after the command, also after options:
    # argparse leaves those after an option as "unknown", so collect them here.
    args, unknown = parser.parse_known_args(argv)
    overrides = [item for item in unknown if "=" in item and not item.startswith("-")]
    if len(overrides) != len(unknown) or (overrides and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if overrides:
        args.overrides = list(args.overrides or []) + overrides
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    from cpc.errors import AudioError, TrainingError

    # Bad input, a full disk, a folder we may not write, Ctrl-C: one line, no traceback.
    # Anything else is a bug and keeps its traceback.
    try:
        return args.func(args) or 0
    except (CommandError, OSError, ValueError, AudioError, TrainingError) as error:
        print(f"cpc {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print(f"cpc {args.command}: {interrupt or 'interrupted'}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy: its CommandError is the class
    # that other modules raise (python -m would otherwise define a second one).
    from cpc.cli import main as _main

    sys.exit(_main())
