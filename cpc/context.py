"""The autoregressive context network: c_t = g_ar(z_{<=t}) (paper, section 2).

Shape legend: B batch, T frames, C latent channels, H context size (hidden_size).

A causal recurrent network (GRU in the paper, 256 units; LSTM as an option). The hidden
state is passed in and returned explicitly and never kept on the module, so streaming
extraction (feed chunks, carry the state) equals one pass over the whole sequence.
Recurrence is causal, so frames past a sequence's length (right padding) cannot change
earlier outputs; no packing is needed.
"""

from __future__ import annotations

from torch import Tensor, nn

from cpc.config import RecurrentContextConfig

# GRU: a tensor (num_layers, B, H); LSTM: a tuple (h, c) of such tensors.
Hidden = Tensor | tuple[Tensor, Tensor]


class RecurrentContext(nn.Module):
    """Causal RNN over latents: (B, T, C) -> (B, T, H)."""

    def __init__(self, cell: type[nn.RNNBase], input_size: int, hidden_size: int, num_layers: int = 1) -> None:
        super().__init__()
        self.rnn = cell(input_size, hidden_size, num_layers=num_layers, batch_first=True)
        self.output_size = hidden_size

    def forward(self, latents: Tensor, hidden: Hidden | None = None) -> tuple[Tensor, Hidden]:
        """latents (B, T, C), hidden from the previous chunk or None -> context (B, T, H), new hidden."""
        if latents.dim() != 3:
            raise ValueError(f"expected latents of shape (B, T, C), got {tuple(latents.shape)}")
        return self.rnn(latents, hidden)


def build_recurrent_context(config: RecurrentContextConfig, input_size: int) -> RecurrentContext:
    cell = {"gru": nn.GRU, "lstm": nn.LSTM}[config.name]
    return RecurrentContext(cell, input_size, config.hidden_size, config.num_layers)
