"""Files that ship with cpc: the YAML recipes and the committed sample corpus.

Recipes can be named (``speech/tiny``) as well as given as a path (``recipes/speech/tiny.yaml``).

Both folders stay at the top of the repository (``recipes/``, ``data/sample/``) and ship inside
the wheel as ``cpc/recipes/`` and ``cpc/sample/`` (``package-dir`` in pyproject.toml). So an
installed cpc finds them beside this module, and a source checkout (editable install, or
``PYTHONPATH=.``) one folder up.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["RecipeNotFound", "list_recipes", "recipe_path", "sample_corpus", "resolve_data_root", "DEFAULT_DATA_ROOT"]

_PACKAGE = Path(__file__).resolve().parent

# The recipes' data.root: the sample corpus, relative to the repository root.
DEFAULT_DATA_ROOT = "data/sample"


class RecipeNotFound(FileNotFoundError):
    """Neither a file nor the name of a shipped recipe."""


def _shipped(installed: str, checkout: str) -> Path:
    """``cpc/<installed>`` in an installed wheel, else ``<checkout>`` in the source checkout."""
    inside = _PACKAGE / installed
    return inside if inside.is_dir() else _PACKAGE.parent / checkout


def _recipes_root() -> Path:
    return _shipped("recipes", "recipes")


def list_recipes() -> list[str]:
    """Names of the shipped recipes, e.g. ``["speech/paper", "speech/tiny"]``."""
    root = _recipes_root()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def recipe_path(recipe: str | os.PathLike) -> Path:
    """A recipe file: ``recipe`` itself when it is a file, else the shipped recipe of that name."""
    if os.path.isfile(recipe):
        return Path(recipe)
    name = str(recipe)
    name = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if name in list_recipes():
        return _recipes_root() / f"{name}.yaml"
    raise RecipeNotFound(
        f"recipe {recipe} is neither a file nor a shipped recipe (shipped: {', '.join(list_recipes()) or 'none found'})"
    )


def sample_corpus() -> Path:
    """The committed 6-minute sample corpus (LibriSpeech layout with labels)."""
    return _shipped("sample", "data/sample")


def resolve_data_root(root: str) -> str:
    """``data.root`` as given, except the recipes' default ``data/sample`` when no such folder is
    under the current directory (cpc run outside the checkout): then the shipped sample corpus."""
    if root == DEFAULT_DATA_ROOT and not os.path.exists(root):
        return str(sample_corpus())
    return root
