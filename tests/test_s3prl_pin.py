"""Our s3prl upstream against s3prl's own Featurizer, recorded once (tests/fixtures/s3prl/record_featurizer.py).

s3prl is not installed in CI; the recording keeps the contract tested there: which layer each
selection takes, the weighted sum at its initial weights (the mean of the layers), and the
round(S / 160) frames s3prl keeps of each row.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from cpc.speech.cpc_audio import import_cpc_audio
from cpc.upstream import CPCUpstream

FIXTURES = Path(__file__).resolve().parent / "fixtures"
_spec = importlib.util.spec_from_file_location("record_featurizer", FIXTURES / "s3prl" / "record_featurizer.py")
record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record)


@pytest.fixture(scope="module")
def ours():
    upstream = CPCUpstream(model=import_cpc_audio(FIXTURES / "cpc_audio" / "batchnorm_gru" / "hub.pt")).eval()
    wavs = record.waveforms()
    with torch.no_grad():
        return wavs, upstream(wavs)


@pytest.mark.parametrize("selection", list(record.SELECTIONS))
def test_rows_equal_s3prl_featurizer(ours, selection):
    wavs, out = ours
    recorded = torch.load(FIXTURES / "s3prl" / "featurizer.pt")["rows"][selection]
    layers = {
        "layer_0": out["hidden_states"][0],
        "layer_1": out["hidden_states"][1],
        "last_hidden_state": out["last_hidden_state"],
        "weighted_sum": (out["hidden_states"][0] + out["hidden_states"][1]) / 2,  # softmax of zero weights
    }
    assert len(recorded) == len(wavs)
    for row, (wav, theirs) in enumerate(zip(wavs, recorded)):
        assert len(theirs) == round(len(wav) / 160)  # s3prl's cut
        torch.testing.assert_close(layers[selection][row, : len(theirs)], theirs, atol=1e-5, rtol=0)
