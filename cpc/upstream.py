"""A cpc checkpoint as an s3prl upstream: ``forward(wavs) -> {"hidden_states": [...], ...}``.

Shape legend: B batch, S samples (16 kHz), T frames, C latent channels (z_t), H context size (c_t).

s3prl (https://github.com/s3prl/s3prl, checked against 0.4.18) runs a downstream task on an
"upstream": an ``nn.Module`` whose ``forward`` takes a list of B waveforms of their own lengths
and returns a dict with ``"hidden_states"``, a list of (B, T, D) tensors (one per layer, padded
to the longest), plus ``get_downsample_rates(key)``, the input samples per output frame.
s3prl's ``Featurizer`` picks one layer or learns a weighted sum of them, and cuts each row to
``round(S_i / downsample_rate)`` frames.

Here the layers are the encoder's z_t (B, T, C) and the context network's c_t (B, T, H), in that
order; ``"last_hidden_state"`` is c_t. Rows are padded to the longest waveform, and frames past a
waveform's own ``model.output_lengths(S_i)`` are zero, so each row equals that waveform run
alone. ``"hidden_states_lengths"`` (B,) gives those exact frame counts.

A weighted sum over layers needs layers of one size: C = H in the tiny recipe (128); for the
paper's model (C = 512, H = 256) select one layer (s3prl ``-s last_hidden_state`` or ``-l 0|1``,
i.e. ``Featurizer(..., layer_selection=0|1)``).

In an s3prl 0.4 checkout, a custom upstream is a folder ``s3prl/upstream/cpc_toolkit/`` with an
empty ``__init__.py``, ``expert.py`` holding ``from cpc.upstream import UpstreamExpert``, and
``hubconf.py`` holding ``from .expert import UpstreamExpert`` and
``def cpc_toolkit_local(ckpt, *args, **kwargs): return UpstreamExpert(ckpt, *args, **kwargs)``,
plus the line ``from s3prl.upstream.cpc_toolkit.hubconf import *`` in ``s3prl/hub.py``; then
``run_downstream.py -u cpc_toolkit_local -k CHECKPOINT ...`` (``-l 0|1`` picks one layer). s3prl's
runner builds it as ``UpstreamExpert(ckpt=..., model_config=..., refresh=...)``.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

__all__ = ["CPCUpstream", "UpstreamExpert", "HIDDEN_STATE_LAYERS"]

HIDDEN_STATE_LAYERS = ("encoder", "context")  # the order of "hidden_states"


class CPCUpstream(nn.Module):
    """s3prl upstream over a CPC model: ``forward(list of (S_i,) waveforms)`` -> dict of (B, T, D) hidden states.

    Built from a checkpoint path (``CPCUpstream(path)``, as s3prl's ``UpstreamExpert(ckpt)``) or
    from a model (``CPCUpstream(model=model)``). It does not change the model's train/eval mode:
    s3prl calls ``.eval()`` for frozen features and ``.train()`` when finetuning.
    """

    def __init__(
        self,
        ckpt: str | os.PathLike | None = None,
        model_config: str | None = None,
        *,
        model: nn.Module | None = None,
        **kwargs,
    ) -> None:
        super().__init__()
        if (ckpt is None) == (model is None):
            raise ValueError("CPCUpstream needs exactly one of a checkpoint path (ckpt) or a model")
        if model is None:
            from cpc.checkpoint import load

            model = load(
                ckpt, needs="speech", what="the s3prl upstream"
            )  # FileNotFoundError / CheckpointError naming the file; the config is inside
        self.model = model
        self.name = "[cpc upstream]"

    def get_downsample_rates(self, key: str) -> int:
        """Input samples per frame, for every key (both layers are on the encoder's grid: 160 for the recipes)."""
        return self.model.downsample_rate

    def forward(self, wavs: list[Tensor]) -> dict[str, Tensor | list[Tensor]]:
        """wavs: list of B waveforms (S_i,) float at 16 kHz -> hidden states padded to the longest.

        ``"hidden_states"``: [z (B, T, C), c (B, T, H)]; ``"last_hidden_state"``: c (B, T, H);
        ``"hidden_states_lengths"``: (B,) frames of each waveform; frames past it are zero.
        """
        if not isinstance(wavs, (list, tuple)) or not wavs:
            raise ValueError(f"expected a non-empty list of waveforms of shape (S,), got {type(wavs).__name__}")
        shapes = [tuple(wav.shape) for wav in wavs]
        if any(len(shape) != 1 or shape[0] == 0 for shape in shapes):
            raise ValueError(f"expected waveforms of shape (S,) with S > 0, got shapes {shapes}")
        device = wavs[0].device
        lengths = torch.tensor([wav.shape[0] for wav in wavs], device=device)  # (B,)
        for wav in wavs:  # float, and every one long enough for a frame: a ValueError naming the minimum otherwise
            self.model.encoder.check_waveforms(wav)
        frames = self.model.output_lengths(lengths)  # (B,)
        waveforms = pad_sequence(list(wavs), batch_first=True)  # (B, S)
        latents, frames = self.model.encoder(waveforms, lengths)  # (B, T, C), padded frames zeroed by the encoder
        context = self.model.context_features(latents, frames)  # (B, T, H): padding cannot reach a valid frame
        valid = torch.arange(context.shape[1], device=device) < frames[:, None]  # (B, T)
        context = context * valid[:, :, None].to(context.dtype)  # zero the padded frames, as in z
        return {"hidden_states": [latents, context], "last_hidden_state": context, "hidden_states_lengths": frames}


UpstreamExpert = CPCUpstream  # the name s3prl's upstream folders export
