"""Files that ship with cpc: the YAML recipes and the committed sample corpus.

Recipes can be named (``speech/tiny``) as well as given as a path (``recipes/speech/tiny.yaml``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["RecipeNotFound", "list_recipes", "recipe_path", "sample_corpus"]

_REPO = Path(__file__).resolve().parents[1]


class RecipeNotFound(FileNotFoundError):
    """Neither a file nor the name of a shipped recipe."""


def _recipes_root() -> Path:
    return _REPO / "recipes"


def list_recipes() -> list[str]:
    """Names of the shipped recipes, e.g. ``["speech/paper", "speech/tiny"]``."""
    root = _recipes_root()
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def recipe_path(recipe: str | os.PathLike) -> Path:
    """A recipe file: ``recipe`` itself when it is a file, else the shipped recipe of that name."""
    if os.path.isfile(recipe):
        return Path(recipe)
    name = str(recipe)
    name = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if name in list_recipes():
        return _recipes_root() / f"{name}.yaml"
    raise RecipeNotFound(f"recipe {recipe} is neither a file nor a shipped recipe (shipped: {', '.join(list_recipes())})")


def sample_corpus() -> Path:
    """The committed 6-minute sample corpus (LibriSpeech layout with labels)."""
    return _REPO / "data" / "sample"
