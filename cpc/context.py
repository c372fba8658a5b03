"""The autoregressive context network: c_t = g_ar(z_{<=t}) (paper, section 2).

Shape legend: B batch, T frames, C latent channels, H context size (hidden_size).

A causal recurrent network (GRU in the paper, 256 units; LSTM as an option). The hidden
state is passed in and returned explicitly and never kept on the module, so streaming
extraction (feed chunks, carry the state) equals one pass over the whole sequence.
Recurrence is causal, so frames past a sequence's length (right padding) cannot change
earlier outputs; no packing is needed.

``reverse=True`` (CPC_audio's ``cpc_mode=reverse``, for imported models) runs the network
from each sequence's last valid frame to its first: c_t reads z_{>=t}. Such a model is not
causal (``causal`` is False), so streaming refuses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class RecurrentContextConfig:
    """GRU (the paper's, 256 units) or LSTM over the latents (cpc.context.RecurrentContext)."""

    name: str = "gru"  # gru | lstm
    hidden_size: int = 256
    num_layers: int = 1
    # Run over the frames last to first (CPC_audio's cpc_mode=reverse): c_t then reads z_{>=t},
    # so the model is not causal and cannot stream.
    reverse: bool = False


# GRU: a tensor (num_layers, B, H); LSTM: a tuple (h, c) of such tensors.
Hidden = Tensor | tuple[Tensor, Tensor]


class RecurrentContext(nn.Module):
    """Causal RNN over latents: (B, T, C) -> (B, T, H)."""

    def __init__(
        self, cell: type[nn.RNNBase], input_size: int, hidden_size: int, num_layers: int = 1, *, reverse: bool = False
    ) -> None:
        super().__init__()
        self.rnn = cell(input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.output_size = hidden_size
        self.reverse = reverse
        self.causal = not reverse

    def forward(
        self, latents: Tensor, hidden: Hidden | None = None, *, lengths: Tensor | None = None
    ) -> tuple[Tensor, Hidden]:
        """latents (B, T, C), hidden from the previous chunk or None -> context (B, T, H), new hidden.

        ``lengths`` (B,) frames matter only with ``reverse``: each sequence then starts from its
        own last valid frame (without them, from frame T - 1, padding included)."""
        if latents.dim() != 3:
            raise ValueError(f"expected latents of shape (B, T, C), got {tuple(latents.shape)}")
        if not self.reverse:
            return self.rnn(latents, hidden)
        order = _reversed_order(
            latents.shape[1], lengths, latents.device
        )  # (B, T): valid frames last to first, then the padding
        index = order[..., None].expand(-1, -1, latents.shape[-1])
        context, hidden = self.rnn(latents.gather(1, index), hidden)  # (B, T, H), in reversed order
        # The order is its own inverse (a reversal of the valid frames), so the same gather puts c_t back at t.
        return context.gather(1, order[..., None].expand(-1, -1, context.shape[-1])), hidden


def _reversed_order(num_frames: int, lengths: Tensor | None, device) -> Tensor:
    """(B, T) or (1, T) frame indices: L-1, ..., 0 for the valid frames of each sequence, then L, ..., T-1."""
    t = torch.arange(num_frames, device=device)[None, :]  # (1, T)
    if lengths is None:
        return num_frames - 1 - t
    lengths = lengths.to(device)[:, None]  # (B, 1)
    return torch.where(t < lengths, lengths - 1 - t, t)


def build_recurrent_context(config: RecurrentContextConfig, input_size: int) -> RecurrentContext:
    cell = {"gru": nn.GRU, "lstm": nn.LSTM}[config.name]
    return RecurrentContext(cell, input_size, config.hidden_size, config.num_layers, reverse=config.reverse)
