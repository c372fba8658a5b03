"""Import checkpoints of CPC_audio (facebookresearch/CPC_audio): torch.hub "CPC big", the
libri-light CPC baselines, the ZeroSpeech 2021 CPC baselines, and any model its ``train.py`` wrote.

    model = cpc.import_cpc_audio("60k_epoch4-d0f474de.pt")          # the torch.hub release format
    model = cpc.import_cpc_audio("run/checkpoint_30.pt")            # the training format
    cpc import cpc_audio run/checkpoint_30.pt --out cpc_big.pt      # a normal cpc checkpoint

Two file formats are read, both with ``torch.load(weights_only=True)`` (no code is unpickled):

* hub/release: ``{"config": <its arguments as a dict>, "weights": <CPCModel state dict>}``;
* training: ``checkpoint_N.pt`` = ``{"gEncoder": <CPCModel state dict>, "cpcCriterion": ...,
  "optimizer": ..., "best": ...}`` with its arguments in ``checkpoint_args.json`` beside it.

Mapping (CPC_audio argument -> cpc config), each exact:

    encoder_type=cpc, hiddenEncoder=C   model.encoder: the paper's 5 conv layers (kernels 10,8,4,4,4,
                                        strides 5,4,2,2,2, padding 3,2,1,1,1), C channels each
    normMode layerNorm|batchNorm|instanceNorm|ID
                                        model.encoder.norm channel_unbiased|batch|instance|none
    arMode GRU|LSTM, hiddenGar, nLevelsGRU
                                        model.context.name gru|lstm, hidden_size, num_layers
    cpc_mode=reverse                    model.context.reverse=true (not causal: no streaming)
    rnnMode=linear, nPredicts, dropout  model.predictor linear, prediction_steps, dropout 0.5
    negativeSamplingExt                 model.loss.num_negatives, with score=mean (CPC_audio's
                                        score is the dot product divided by C)

Anything else (MFCC/LFB encoders, arMode RNN/transformer/no_ar, speaker embeddings, state-dict
keys we do not know) is refused with :class:`CPCAudioImportError` (a ValueError) naming the field and its value.
Prediction heads other than ``linear`` (the default ``transformer``, the RNN and conv ones) have
no exact counterpart here: the encoder and context network are imported, the predictors start
at zero, and the import says so.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["CPCAudioImportError", "import_cpc_audio", "read_cpc_audio", "model_config", "convert", "save_imported"]

# The paper's conv stack, hard-coded in CPC_audio's CPCEncoder: (kernel, stride, padding).
CPC_AUDIO_CONVS = [(10, 5, 3), (8, 4, 2), (4, 2, 1), (4, 2, 1), (4, 2, 1)]
NORMS = {"layerNorm": "channel_unbiased", "batchNorm": "batch", "instanceNorm": "instance", "ID": "none"}
CONTEXTS = {"GRU": "gru", "LSTM": "lstm"}
# CPC_audio's defaults (cpc/cpc_default_config.py) for arguments an old file may lack.
DEFAULTS = {
    "hiddenEncoder": 256,
    "hiddenGar": 256,
    "nPredicts": 12,
    "negativeSamplingExt": 128,
    "arMode": "LSTM",
    "nLevelsGRU": 1,
    "normMode": "layerNorm",
    "encoder_type": "cpc",
    "cpc_mode": None,
    "rnnMode": "transformer",
    "dropout": False,
    "speakerEmbedding": 0,
    "samplingType": "samespeaker",
    "sizeWindow": 20480,
    "learningRate": 2e-4,
    "beta1": 0.9,
    "beta2": 0.999,
}


class CPCAudioImportError(ValueError):
    """A CPC_audio file or configuration that cannot be imported exactly; one line naming the field."""


def read_cpc_audio(
    path: str | os.PathLike,
) -> tuple[str, dict[str, Any], dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """A CPC_audio checkpoint -> (format "hub" or "training", its arguments, CPCModel state dict,
    criterion state dict or None)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # not a plain-tensor file: never unpickle code from it
        raise CPCAudioImportError(
            f"{path}: cannot be read with torch.load(weights_only=True): {str(error).splitlines()[0]}"
        ) from None
    if isinstance(state, dict) and "weights" in state and "config" in state:
        return "hub", dict(state["config"]), state["weights"], None
    if isinstance(state, dict) and "gEncoder" in state:
        arguments = path.parent / "checkpoint_args.json"
        if not arguments.is_file():
            raise CPCAudioImportError(
                f"{path}: a CPC_audio training checkpoint needs its arguments in {arguments}, which does not exist"
            )
        config = json.loads(arguments.read_text())
        return "training", config, state["gEncoder"], state.get("cpcCriterion") or None
    keys = sorted(state)[:6] if isinstance(state, dict) else type(state).__name__
    raise CPCAudioImportError(
        f"{path}: not a CPC_audio checkpoint (expected 'config' + 'weights' or 'gEncoder'; found {keys})"
    )


def _argument(config: dict[str, Any], key: str) -> Any:
    return config.get(key, DEFAULTS[key])


def _refuse(key: str, value: Any, why: str) -> CPCAudioImportError:
    return CPCAudioImportError(f"CPC_audio config {key}={value!r} is not supported: {why}")


def model_config(config: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """CPC_audio arguments -> our model section, and why its predictors cannot be imported (None if they can)."""
    if _argument(config, "encoder_type") != "cpc":
        raise _refuse(
            "encoder_type",
            config["encoder_type"],
            "only the convolutional encoder ('cpc') is, not the MFCC/LFB front ends",
        )
    norm = _argument(config, "normMode")
    if norm not in NORMS:
        raise _refuse("normMode", norm, f"expected one of {sorted(NORMS)}")
    ar = _argument(config, "arMode")
    if ar not in CONTEXTS:
        raise _refuse("arMode", ar, f"expected one of {sorted(CONTEXTS)}")
    if _argument(config, "speakerEmbedding"):
        raise _refuse("speakerEmbedding", config["speakerEmbedding"], "speaker embeddings feed the predictors")
    cpc_mode = _argument(config, "cpc_mode")
    if cpc_mode not in (None, "none", "reverse"):
        raise _refuse("cpc_mode", cpc_mode, "expected None, 'none' or 'reverse'")
    channels, hidden = int(_argument(config, "hiddenEncoder")), int(_argument(config, "hiddenGar"))
    layers = [
        {"channels": channels, "kernel_size": k, "stride": s, "padding": p, "bias": True} for k, s, p in CPC_AUDIO_CONVS
    ]
    rnn_mode = _argument(config, "rnnMode")
    why_not = None
    if rnn_mode != "linear":
        why_not = f"rnnMode={rnn_mode!r} has no exact counterpart (only 'linear' prediction heads are imported)"
    elif cpc_mode == "reverse":
        why_not = "cpc_mode='reverse' predicts the past, which our criterion does not"
    section = {
        "encoder": {"name": "conv", "layers": layers, "norm": NORMS[norm]},
        "context": {
            "name": CONTEXTS[ar],
            "hidden_size": hidden,
            "num_layers": int(_argument(config, "nLevelsGRU")),
            "reverse": cpc_mode == "reverse",
        },
        "predictor": {
            "name": "linear",
            "prediction_steps": int(_argument(config, "nPredicts")),
            "first_offset": 1,
            "init": "default" if why_not is None else "zeros",
            "dropout": 0.5 if _argument(config, "dropout") else 0.0,
        },
        "loss": {
            "name": "infonce",
            "num_negatives": int(_argument(config, "negativeSamplingExt")),
            "negative_scope": "batch",
            "score": "mean",
        },
    }
    return section, why_not


def _norm_weights(prefix: str, source: str, state: dict[str, torch.Tensor], norm: str) -> dict[str, torch.Tensor]:
    """One norm layer's tensors under our names; ChannelNorm keeps its scale and shift as (1, C, 1), ours as (C,)."""
    if norm == "none":
        return {}
    names = ["weight", "bias"] + (["running_mean", "running_var", "num_batches_tracked"] if norm == "batch" else [])
    missing = [f"{source}.{name}" for name in names if f"{source}.{name}" not in state]
    if missing:
        raise CPCAudioImportError(f"CPC_audio state dict has no {missing[0]!r}, which normMode needs")
    return {
        f"{prefix}.{name}": state[f"{source}.{name}"].reshape(-1)
        if name in ("weight", "bias")
        else state[f"{source}.{name}"]
        for name in names
    }


def convert(
    config: dict[str, Any], weights: dict[str, torch.Tensor], criterion: dict[str, torch.Tensor] | None
) -> tuple[dict[str, Any], dict[str, torch.Tensor], str | None]:
    """CPC_audio arguments and state dicts -> (our model section, our state dict, why the predictors
    were not imported or None). Every CPC_audio key must be used exactly once."""
    section, why_not = model_config(config)
    weights = {key.removeprefix("module."): value for key, value in weights.items()}
    norm = section["encoder"]["norm"]
    ours: dict[str, torch.Tensor] = {}
    for i in range(len(CPC_AUDIO_CONVS)):
        for name in ("weight", "bias"):
            key = f"gEncoder.conv{i}.{name}"
            if key not in weights:
                raise CPCAudioImportError(f"CPC_audio state dict has no {key!r}: not a CPCEncoder")
            ours[f"encoder.blocks.{i}.conv.{name}"] = weights[key]
        ours.update(_norm_weights(f"encoder.blocks.{i}.norm", f"gEncoder.batchNorm{i}", weights, norm))
    rnn = [key for key in weights if key.startswith("gAR.baseNet.")]
    ours.update({key.replace("gAR.baseNet.", "context.rnn."): weights[key] for key in rnn})
    used = {f"gEncoder.conv{i}.{p}" for i in range(5) for p in ("weight", "bias")} | set(rnn)
    used |= {key for key in weights if key.startswith("gEncoder.batchNorm") and norm != "none"}
    unknown = sorted(set(weights) - used)
    if unknown:
        raise CPCAudioImportError(
            f"CPC_audio state dict key {unknown[0]!r} ({len(unknown)} unknown in all) has no place in the imported model"
        )
    if why_not is None:
        heads = (
            [
                criterion.get(f"wPrediction.predictors.{k}.weight")
                for k in range(section["predictor"]["prediction_steps"])
            ]
            if criterion
            else []
        )
        if not heads or any(head is None for head in heads):
            why_not = "the file holds no prediction heads (cpcCriterion)"
        else:
            ours["predictors.maps.weight"] = torch.cat(
                heads, dim=0
            )  # (K*C, H): W_1 .. W_K stacked, as LinearPredictors holds them
    if why_not is not None:
        section["predictor"]["init"] = "zeros"
    return section, ours, why_not


def _full_config(section: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A whole cpc config around the imported model: CPC_audio's window, learning rate and batches by speaker."""
    from cpc.config import load_config, to_container

    full = to_container(load_config(None))
    full["model"] = section
    full["data"]["window"] = int(_argument(config, "sizeWindow"))
    full["data"]["same_speaker_batches"] = _argument(config, "samplingType") == "samespeaker"
    full["optim"]["lr"] = float(_argument(config, "learningRate"))
    full["optim"]["betas"] = [float(_argument(config, "beta1")), float(_argument(config, "beta2"))]
    return full


def _imported(path: str | os.PathLike):
    from cpc.model import build_model

    source_format, config, weights, criterion = read_cpc_audio(path)
    section, state, why_not = convert(config, weights, criterion)
    full = _full_config(section, config)
    model = build_model(full)
    if why_not is not None:  # zero-initialised heads (init=zeros), not in the file
        state["predictors.maps.weight"] = model.state_dict()["predictors.maps.weight"]
    missing = sorted(set(model.state_dict()) - set(state))
    if missing:
        raise CPCAudioImportError(f"{path}: CPC_audio state dict has no weights for {missing[0]!r}")
    model.load_state_dict(state, strict=True)
    source = {
        "format": f"cpc_audio/{source_format}",
        "path": str(Path(path).resolve()),
        "config": json.dumps(config, sort_keys=True, default=str),
        "predictors": "imported" if why_not is None else f"not imported: {why_not}",
    }
    return model.eval(), full, source, why_not


def import_cpc_audio(path: str | os.PathLike):
    """A CPC_audio checkpoint (either format) -> a :class:`cpc.CPC` in eval mode giving the same z and c.

    ``model.source`` records the file's format, path, original arguments and whether the
    prediction heads were imported."""
    model, _, source, _ = _imported(path)
    model.source = source
    return model


def save_imported(path: str | os.PathLike, out: str | os.PathLike) -> tuple[Any, str | None]:
    """Import ``path`` and write it to ``out`` as a cpc checkpoint (``cpc.load`` reads it); -> (model, why the predictors were not imported)."""
    from cpc.checkpoint import save_checkpoint

    model, full, source, why_not = _imported(path)
    save_checkpoint(out, {"config": full, "model": model.state_dict(), "step": 0, "source": source})
    model.source = source
    return model, why_not


# ----------------------------------------------------------------------------- command line


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("import", help="convert a model trained by another codebase into a cpc checkpoint")
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    cpc_audio = kinds.add_parser(
        "cpc_audio",
        help="a CPC_audio checkpoint (torch.hub release or checkpoint_N.pt)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cpc_audio.add_argument(
        "path", help="CPC_audio checkpoint: hub/release .pt, or checkpoint_N.pt with checkpoint_args.json beside it"
    )
    cpc_audio.add_argument("--out", required=True, help="the cpc checkpoint to write")
    cpc_audio.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from cpc.speech.streaming import StreamingExtractor

    model, why_not = save_imported(args.path, args.out)
    encoder, context = model.config["encoder"], model.config["context"]
    print(f"imported {model.source['format']} {args.path} -> {args.out}")
    print(
        f"  encoder: 5 conv layers x {encoder['layers'][0]['channels']} channels, norm={encoder['norm']}; "
        f"context: {context['name']} {context['hidden_size']} x {context['num_layers']} layer(s){', reversed' if context['reverse'] else ''}"
    )
    if why_not is None:
        print(
            f"  predictors: {model.config['predictor']['prediction_steps']} linear heads imported (loss score=mean, as CPC_audio)"
        )
    else:
        print(f"  predictors: encoder and context only; {why_not}")
    if model.encoder.causal and model.context.causal:
        lookahead = StreamingExtractor(model).lookahead
        print(f"  streaming look-ahead: {lookahead} samples ({lookahead / 16:.1f} ms) past each 10 ms frame")
    else:
        print("  not causal (reverse context or instance norm): model.stream() refuses it")
    return 0
