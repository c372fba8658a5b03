"""Runtime helpers shared across packages: torch threads, seeded random streams. A leaf
module: it imports nothing of cpc."""

from __future__ import annotations

import contextlib

import numpy as np
import torch


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run torch on ``threads`` intra-op threads inside the block, then restore the caller's count.

    ``None`` does nothing: the caller's setting applies. The command line passes 1 (see
    ``cpc.speech.evaluate.DEFAULT_THREADS`` for the measurement behind that choice).
    """
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads={threads}: expected a positive number of threads, or None for the caller's setting")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def seeded(seed: int):
    """Seed torch's global CPU generator inside the block and restore the caller's state after.

    Code that draws from the global generator (``nn.Linear`` initialisation) gives the same
    values as after ``torch.manual_seed(seed)``, but the caller's random stream, and the CUDA
    generators ``torch.manual_seed`` would also reseed, are left as they were.
    """
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        yield


def generator_for(*words: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator that is a function of ``words`` only (e.g. seed, rank, stream, step).

    ``numpy.random.SeedSequence`` hashes the tuple into a 64-bit seed, so any non-negative
    integers work (a product of primes overflowed 64 bits from seed 18447 on).
    """
    entropy = np.random.SeedSequence(list(words)).generate_state(2, np.uint32)
    return torch.Generator(device=device).manual_seed(int(entropy[0]) << 32 | int(entropy[1]))


def plain(value):
    """An enum setting's string value (configs hold ``str`` enums); anything else unchanged."""
    return getattr(value, "value", value)
