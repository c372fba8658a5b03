"""The modalities this toolkit trains: the one list that composes the core with them.

Each entry is a package that registers its parts in :mod:`cpc.registry` when it is imported
(its encoder, data source and any section of its own; its probe and demo commands live in the
package). The registry imports them by name, the first time a registry is read, so the core
never imports a modality. Adding a modality is a new package plus one line here.
"""

from __future__ import annotations

import importlib

MODALITIES = ("cpc.speech", "cpc.image", "cpc.text")


def load() -> None:
    """Import every modality package (each registers itself)."""
    for name in MODALITIES:
        importlib.import_module(name)
