"""`cpc abx` against the ZeroSpeech reference (PyPI ``zerospeech-libriabx2``) on the same .npy features.

Extracts each feature set for the files of an item file (through the feature cache, like
``cpc abx``), writes one ``<file>.npy`` per utterance, and scores them with both
:func:`cpc.speech.abx.abx_error` and the reference's ``EvalABX._ABX`` (within context, cosine
distance, 10 ms frames, the reference's defaults for ``max_size_group``, ``max_x_across`` and
``seed``). The reference is given its file list sorted by name, the order :mod:`cpc.speech.abx`
assumes (its own command line walks the folder in file-system order); see that module's
docstring.

    pip install zerospeech-libriabx2   # imports torchaudio, only for its own CPC loader
    python benchmarks/abx/compare_reference.py --data ~/.cache/cpc/corpora/synth-1h-seed0 \
        --features mfcc logmel runs/tiny/checkpoints/last.pt [--rows 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def reference_abx(
    features: dict[str, np.ndarray],
    item_path: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    max_size_group: int = 10,
    max_x_across: int = 5,
    seed: int = 3459,
) -> dict:
    """The reference's within-context within/across-speaker error (%) of ``features`` written as .npy under ``folder``."""
    from zrc_abx2.ABX_src.models import Pooling
    from zrc_abx2.eval_ABX import EvalABX, _load_npy

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, values in features.items():
        np.save(folder / f"{name}.npy", np.asarray(values, dtype=np.float32))
    sequences = sorted((name, str(folder / f"{name}.npy")) for name in features)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its progress
        scores = EvalABX()._ABX(
            Pooling.NONE,
            seed,
            _load_npy,
            str(item_path),
            sequences,
            "cosine",
            100.0,
            ["within", "across"],
            ["within"],
            max_x_across=max_x_across,
            max_size_group=max_size_group,
        )
    return {"within": 100.0 * scores["within-within"], "across": 100.0 * scores["across-within"]}


def main() -> None:
    import torch

    from cpc.speech.abx import abx_error
    from cpc.speech.corpus.formats import load_corpus, read_item, write_item
    from cpc.speech.evaluate import DEFAULT_CACHE
    from cpc.speech.features import FeatureCache, extract, feature_set

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path.home() / ".cache/cpc/corpora/synth-1h-seed0"))
    parser.add_argument("--item", help="item file (default DATA/abx/test.item)")
    parser.add_argument("--features", nargs="+", default=["mfcc", "logmel"])
    parser.add_argument("--rows", type=int, help="keep the item file's first ROWS rows")
    parser.add_argument("--json", help="write the table as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    corpus = load_corpus(args.data)
    items = read_item(args.item or Path(args.data) / "abx" / "test.item")[: args.rows]
    files = sorted({row.file for row in items})
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        item_path = Path(scratch) / "test.item"
        write_item(item_path, items)
        items = read_item(item_path)  # both read the same rounded times
        for name in args.features:
            values = extract(
                feature_set(name, threads=1),
                corpus.files,
                files,
                cache=FeatureCache(DEFAULT_CACHE),
                corpus_root=corpus.root,
                progress=False,
            )
            started = time.perf_counter()
            ours = abx_error(values, items, threads=1)
            ours_seconds = time.perf_counter() - started
            reference = reference_abx(values, item_path, Path(scratch) / Path(name).name)
            row = {
                "features": name,
                "rows": len(items),
                "ours_within": ours["within"],
                "reference_within": reference["within"],
                "ours_across": ours["across"],
                "reference_across": reference["across"],
                "ours_seconds": ours_seconds,
                "reference_seconds": time.perf_counter() - started - ours_seconds,
            }
            results.append(row)
            print(
                f"{name}: within ours {ours['within']:.3f} reference {reference['within']:.3f} | across ours {ours['across']:.3f} "
                f"reference {reference['across']:.3f} ({len(items)} rows; {row['ours_seconds']:.2f} s vs {row['reference_seconds']:.2f} s)",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
