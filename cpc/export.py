"""``cpc export``: the feature extractor as a TorchScript or ONNX file (work in progress).

    cpc export CHECKPOINT --format torchscript|onnx --out FILE [--layer context|encoder]
"""

from __future__ import annotations

import argparse

FORMATS = ("torchscript", "onnx")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export the feature extractor (TorchScript or ONNX)")
    parser.add_argument("checkpoint", help="a cpc checkpoint (e.g. runs/tiny/checkpoints/last.pt)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="output format")
    parser.add_argument("--out", required=True, help="file to write")
    parser.add_argument("--layer", default="context", choices=("context", "encoder"), help="features to export (default: context)")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    raise NotImplementedError("cpc export is not implemented yet")
