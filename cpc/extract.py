"""Write a corpus' CPC features to disk (``cpc extract``): one .npy per utterance, or a Kaldi ark/scp.

    cpc extract CHECKPOINT --data DIR|MANIFEST --out DIR [--layer context|encoder] [--format npy|kaldi]
"""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("extract", help="write a corpus' CPC features (npy files or a Kaldi ark/scp)", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a cpc checkpoint (e.g. runs/tiny/checkpoints/last.pt)")
    parser.add_argument("--data", required=True, help="corpus: LibriSpeech-layout folder, flat folder of audio, or TSV manifest")
    parser.add_argument("--out", required=True, help="output folder (created; an interrupted extraction into it is resumed)")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from cpc.cli import CommandError

    raise CommandError("not implemented yet")
