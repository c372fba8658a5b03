"""``cpc compare WHAT --recipe RECIPE``: variants ("arms") of one recipe trained alike, then scored.

The recipe's ``data.name`` picks the modality module that trains and scores the arms
(:func:`cpc.registry.compares`); this module holds what is the same for all of them: the arms of
``objectives`` and ``modified`` (from the recipe alone), ``--only`` and ``--seeds``, and the command.

A modality registers its comparison with ``registry.register_compare(data_name, module)``; the module
declares

    COMPARE_DESCRIPTION        its paragraphs of ``cpc compare --help``
    COMPARISONS                the WHATs it runs: {what: help} (ARM_COMPARISONS: objectives, modified)
    COMPARE_OPTIONS            its options: {flag: ``add_argument`` keywords}; one that two modalities
                               take is declared by both, identically
    compare_from_args(args)    checks the options (those of other modalities included) and runs it

and the module of the default data source (``registry.DEFAULT_NAMES["data"]``) also
``DEFAULT_RECIPE``, the default ``--recipe``. Every comparison takes --run-dir, --recipe, --steps
and --only.
"""

from __future__ import annotations

import argparse
import os

from cpc import registry
from cpc.eval.dispatch import add_declared_options, load_modules

OBJECTIVES = ("infonce", "nt_xent", "margin", "triplet", "binary")
ARM_COMPARISONS = {"objectives": "one run per contrastive loss", "modified": "CPC_audio's variants"}
TITLES = {"objectives": "Contrastive objectives compared", "modified": "Modified CPC (CPC_audio) variants compared"}

DESCRIPTION = """\
``cpc compare``: train variants of one recipe on the same corpus, steps and seed, then probe each.

* ``objectives``: one run per contrastive objective (``model.loss.name``, cpc.objectives), each
  with the recipe's number and scope of negatives and every objective's own defaults
  (temperature, margins, mining): none is tuned more than another.
* ``modified``: "modified CPC" (CPC_audio) toggles one change at a time against the recipe: a
  transformer predictor, an LSTM context, channel norm in the encoder.
"""


def objective_arms(recipe: str | os.PathLike) -> dict[str, list[str]]:
    """One arm per objective. Naming another loss starts ``model.loss`` from that objective's
    defaults (cpc.config), so the recipe's negatives are set again: the same candidates for all."""
    from cpc.config import load_config

    loss = load_config(recipe).model.loss
    shared = [
        f"model.loss.num_negatives={loss.num_negatives}",
        f"model.loss.negative_scope={getattr(loss.negative_scope, 'value', loss.negative_scope)}",
    ]
    return {name: [f"model.loss.name={name}", *shared] for name in OBJECTIVES}


def modified_arms(recipe: str | os.PathLike) -> dict[str, list[str]]:
    """The recipe, and the recipe with each of CPC_audio's changes toggled on its own: the
    transformer predictor in place of linear W_k, LSTM in place of GRU, channel norm in the
    encoder (added where the recipe has none, removed where it has it, as speech/tiny)."""
    from cpc.config import load_config

    config = load_config(recipe)
    predictor, model = config.model.predictor, config.model
    keep = [
        f"model.predictor.prediction_steps={predictor.prediction_steps}",
        f"model.predictor.first_offset={predictor.first_offset}",
        f"model.predictor.init={getattr(predictor.init, 'value', predictor.init)}",
    ]
    arms = {"recipe": []}
    if predictor.name == "linear":
        arms["transformer_predictor"] = ["model.predictor.name=transformer", *keep]
    if model.context.name == "gru":
        arms["lstm_context"] = ["model.context.name=lstm"]
    if model.encoder.name == "conv":
        has_norm = getattr(model.encoder.norm, "value", model.encoder.norm) == "channel"
        arms["no_channel_norm" if has_norm else "channel_norm"] = [
            f"model.encoder.norm={'none' if has_norm else 'channel'}"
        ]
    return arms


def select_arms(arms: dict[str, list[str]], only: str | None, what: str) -> dict[str, list[str]]:
    """The arms ``--only ARM,ARM`` keeps (all without it), in their order; an unknown name fails on one line."""
    from cpc.cli import CommandError

    chosen = only.split(",") if only else list(arms)
    unknown = sorted(set(chosen) - set(arms))
    if unknown:
        raise CommandError(f"--only {','.join(unknown)}: not an arm of '{what}' (arms: {', '.join(arms)})")
    return {name: value for name, value in arms.items() if name in chosen}


def arms_from_args(args: argparse.Namespace) -> tuple[dict[str, list[str]], str]:
    """``objectives`` or ``modified``: the recipe's arms that ``--only`` keeps, and the report's title."""
    arms = objective_arms(args.recipe) if args.what == "objectives" else modified_arms(args.recipe)
    return select_arms(arms, args.only, args.what), TITLES[args.what]


def parse_seeds(text: str, overrides: list[str]) -> list[int]:
    """--seeds S,S: distinct non-negative integers, in order; the seed is then not also an override."""
    from cpc.cli import CommandError

    try:
        seeds = [int(seed) for seed in text.split(",")]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) < len(seeds):
        raise CommandError(f"--seeds {text}: expected distinct non-negative integers, comma-separated, e.g. 0,1,2")
    if any(override.split("=", 1)[0].strip() == "train.seed" for override in overrides):
        raise CommandError("--seeds sets train.seed for each run; drop the train.seed= override")
    return seeds


# ----------------------------------------------------------------------------- CLI


def _modules() -> dict:
    """data.name -> the module comparing such recipes; the default data source's first."""
    return load_modules(registry.compares(), registry.DEFAULT_NAMES["data"])


def register(subparsers: argparse._SubParsersAction) -> None:
    modules = _modules()
    comparisons = {what: text for module in modules.values() for what, text in module.COMPARISONS.items()}
    default_recipe = modules[registry.DEFAULT_NAMES["data"]].DEFAULT_RECIPE
    parser = subparsers.add_parser(
        "compare",
        help="train variants of a recipe on the same data and compare them (report.md)",
        description="\n".join([DESCRIPTION, *(module.COMPARE_DESCRIPTION for module in modules.values())]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "what", choices=tuple(comparisons), help="; ".join(f"{what}: {text}" for what, text in comparisons.items())
    )
    parser.add_argument("--run-dir", required=True, help="output folder: one sub-folder per arm, report.md, curves.png")
    parser.add_argument(
        "--recipe", default=default_recipe, help=f"shipped recipe name or YAML (default {default_recipe})"
    )
    parser.add_argument("--steps", type=int, required=True, help="training steps of every arm")
    # Comma-separated, so key=value overrides may follow them.
    parser.add_argument("--only", metavar="ARM,ARM", help="run only these arms, e.g. infonce,margin")
    add_declared_options(parser, {name: module.COMPARE_OPTIONS for name, module in modules.items()})
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every arm")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from cpc.cli import CommandError

    if args.steps < 1:
        raise CommandError(f"--steps must be >= 1, got {args.steps}")
    from cpc.config import load_config

    data = load_config(args.recipe).data.name
    modules = _modules()
    if data not in modules:
        raise CommandError(
            f"cpc compare: {args.recipe} is a {data} recipe; `cpc compare` takes {' or '.join(modules)} recipes "
            f"(for other recipes, train each objective with `cpc train RECIPE model.loss.name=...`)"
        )
    if args.what not in modules[data].COMPARISONS:
        own = " or ".join(f"`cpc compare {what}`" for what in modules[data].COMPARISONS)
        takers = " or ".join(name for name, module in modules.items() if args.what in module.COMPARISONS)
        raise CommandError(
            f"cpc compare {args.what}: {args.recipe} is a {data} recipe; {own} "
            f"{'takes' if len(modules[data].COMPARISONS) == 1 else 'take'} {data} recipes, "
            f"`cpc compare {args.what}` takes {takers} recipes"
        )
    return modules[data].compare_from_args(args)
