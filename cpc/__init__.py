"""cpc: Contrastive Predictive Coding (van den Oord, Li, Vinyals 2018) for sequences.

Public API::

    model = cpc.build_model(config)           # from a recipe (cpc.load_config) or a dict
    model = cpc.load("run/checkpoints/last.pt")
    model = cpc.import_cpc_audio("checkpoint_30.pt")   # a CPC_audio model (docs/pretrained.md)
    features, lengths = model.extract_features(waveforms, lengths, layer="context")
"""

import os

# OpenMP threads that sleep at a barrier instead of spinning: on a shared machine a spinning
# thread holds a core the others need (a tiny step 2.2x faster under load, no slower alone:
# docs/speed.md). Read when torch loads OpenMP, so only if cpc is imported before torch; an
# explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cpc.checkpoint import load  # noqa: E402
from cpc.config import Config, ConfigError, load_config  # noqa: E402
from cpc.model import CPC, build_model
from cpc.speech.cpc_audio import import_cpc_audio

__all__ = ["CPC", "Config", "ConfigError", "build_model", "import_cpc_audio", "load", "load_config"]
__version__ = "0.1.0"
