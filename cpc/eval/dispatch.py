"""What ``cpc demo`` and ``cpc compare`` share: the modality modules a registry table names, and the
command-line options they declare, added to one parser."""

from __future__ import annotations

import argparse
import importlib
from types import ModuleType


def load_modules(table: dict[str, str], default: str) -> dict[str, ModuleType]:
    """Import the modules of a registry table (name -> module path), the default first and the others by
    name: help and messages then read the same whichever modality registered first."""
    names = [default] * (default in table) + sorted(name for name in table if name != default)
    return {name: importlib.import_module(table[name]) for name in names}


def add_declared_options(parser: argparse.ArgumentParser, declared: dict[str, dict[str, dict]]) -> None:
    """Add the options each module declares (name -> {flag: ``add_argument`` keywords}), each flag once.
    An option two modules take is declared by both, and the two must agree."""
    added: dict[str, dict] = {}
    for name, options in declared.items():
        for flag, keywords in options.items():
            if flag not in added:
                parser.add_argument(flag, **keywords)
                added[flag] = keywords
            elif added[flag] != keywords:
                raise ValueError(f"{flag} is declared differently by {name} and by another modality")


def destination(flag: str) -> str:
    """The attribute argparse stores a flag under: ``--max-images`` -> ``max_images``."""
    return flag.lstrip("-").replace("-", "_")


def listing(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
