"""The encoder interface: what the core asks of a modality's encoder (paper, section 2: z_t = g_enc(x_t)).

Shape legend: B batch, T positions along the prediction axis, C latent channels; ``*grid`` is
(T,) for sequences and (rows, cols) for an image's patch grid.

An encoder is an ``nn.Module`` with

    forward(inputs, lengths=None) -> latents (B, *grid, C), lengths (B,) along the first grid axis
    output_size: int                 C, the latent channels (the context network's input size)
    output_lengths(lengths) -> (B,)  positions for inputs of ``lengths`` (samples, rows, ...)

and, optionally, ``check_inputs(inputs)`` (raise ValueError for inputs it cannot encode, called by
``CPC.extract_features``) and ``streaming_extractor(model, layer)`` (chunked extraction,
``CPC.stream``). Each modality registers its encoders in ``cpc.registry.ENCODERS``: raw audio in
cpc/speech/encoder.py, patches in cpc/image/encoder.py, sentences in cpc/text/encoder.py.
This module also holds the checks every encoder shares.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class Encoder(Protocol):
    output_size: int

    def __call__(self, inputs: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]: ...

    def output_lengths(self, lengths: Tensor) -> Tensor: ...


def check_lengths(
    lengths: object, batch_size: int, maximum: int, *, unit: str = "length", of: str | None = None
) -> None:
    """Valid lengths must be an integer tensor (B,) with 0 < length <= ``maximum``; raise ValueError quoting the bad one.

    ``unit`` and ``of`` word the message: "lengths[1] = 9 is not a valid {unit} for {of}"
    (default: inputs of ``maximum`` samples)."""
    if (
        not isinstance(lengths, Tensor)
        or lengths.dtype.is_floating_point
        or lengths.dtype.is_complex
        or lengths.dtype == torch.bool
    ):
        kind = lengths.dtype if isinstance(lengths, Tensor) else type(lengths).__name__
        raise ValueError(f"lengths must be an integer tensor of shape (B,), got {kind}")
    if lengths.shape != (batch_size,):
        raise ValueError(f"expected lengths of shape (B,) = ({batch_size},), got {tuple(lengths.shape)}")
    bad = (lengths <= 0) | (lengths > maximum)
    if bool(bad.any()):
        index = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"lengths[{index}] = {int(lengths[index])} is not a valid {unit} for {of or f'inputs of {maximum} samples'} "
            f"(need 0 < length <= {maximum})"
        )


def mask_frames(x: Tensor, lengths: Tensor) -> Tensor:
    """Zero x (B, C, T) or (B, C, 1, T) at frames t >= lengths[b]."""
    valid = torch.arange(x.shape[-1], device=x.device) < lengths[:, None]  # (B, T)
    return x * valid.view(len(x), *[1] * (x.dim() - 2), x.shape[-1]).to(x.dtype)
