"""cpc: Contrastive Predictive Coding (van den Oord, Li, Vinyals 2018) for sequences.

Public API::

    model = cpc.build_model(config)           # from a recipe (cpc.load_config) or a dict
    model = cpc.load("run/checkpoints/last.pt")
    model = cpc.import_cpc_audio("checkpoint_30.pt")   # a CPC_audio model (docs/pretrained.md)
    features, lengths = model.extract_features(waveforms, lengths, layer="context")
"""

import os
import time


def _other_runnable_tasks(samples: int = 10, interval_s: float = 0.002) -> float:
    """Tasks running or waiting for a CPU besides this one, averaged over ~20 ms (Linux's
    /proc/stat ``procs_running``; 0.0 where it cannot be read)."""
    counts = []
    for _ in range(samples):
        try:
            with open("/proc/stat") as stat:
                counts += [int(line.split()[1]) - 1 for line in stat if line.startswith("procs_running")]
        except (OSError, ValueError, IndexError):
            return 0.0
        time.sleep(interval_s)
    return sum(counts) / len(counts) if counts else 0.0


# On a machine that is already busy, OpenMP threads that sleep at a barrier instead of spinning:
# a spinning thread holds a core another process needs (a tiny step 1.7x faster beside one busy
# process), while on an idle machine spinning is 1.4x faster (docs/speed.md). Read when torch
# loads OpenMP, so it applies only if cpc is imported before torch; OMP_WAIT_POLICY set by the
# user always wins.
if "OMP_WAIT_POLICY" not in os.environ and _other_runnable_tasks() >= 0.5:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

from cpc.checkpoint import load  # noqa: E402
from cpc.config import Config, ConfigError, load_config  # noqa: E402
from cpc.model import CPC, build_model  # noqa: E402
from cpc.speech.cpc_audio import import_cpc_audio  # noqa: E402

__all__ = ["CPC", "Config", "ConfigError", "build_model", "import_cpc_audio", "load", "load_config"]
__version__ = "0.1.0"
