"""``cpc demo [NAME]``: a modality's demo, picked by name from the registry (:func:`cpc.registry.demos`).

    cpc demo --run-dir runs/demo [options] [key=value ...]         the default demo (registry.DEFAULT_DEMO)
    cpc demo NAME --run-dir runs/NAME [options] [key=value ...]    e.g. image, text

A modality registers its demo with ``registry.register_demo(name, module)``; the module declares

    DEMO_DESCRIPTION                  its paragraphs of ``cpc demo --help``
    DEFAULT_RECIPE                    the recipe it trains when no --recipe is given
    DEMO_OPTIONS                      the options only it takes: {flag: ``add_argument`` keywords}
    demo_from_args(args, overrides)   runs the demo from the parsed command line

Every demo takes --run-dir, --steps and --recipe. An option that only other demos declare is an
error on one line, naming them; one declared with a default of its own cannot be told from one not
given, and is left alone.
"""

from __future__ import annotations

import argparse
from types import ModuleType

from cpc import registry
from cpc.eval.dispatch import add_declared_options, destination, listing, load_modules


def _command(name: str) -> str:
    """How the demo ``name`` is run: the default one has no name on the command line."""
    return "cpc demo" if name == registry.DEFAULT_DEMO else f"cpc demo {name}"


def register(subparsers: argparse._SubParsersAction) -> None:
    demos = load_modules(registry.demos(), registry.DEFAULT_DEMO)
    default = registry.DEFAULT_DEMO
    parser = subparsers.add_parser(
        "demo",
        help="train a tiny CPC on CPU and compare it with baselines (report.md)",
        description="\n".join(demo.DEMO_DESCRIPTION for demo in demos.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        usage=f"cpc demo [{'|'.join(demos)}] --run-dir RUN_DIR [options] [key=value ...]",
    )
    parser.add_argument("--run-dir", required=True, help="output folder (training run, features, report)")
    parser.add_argument("--steps", type=int, help="training steps (default: the recipe's)")
    others = "".join(f"; {name}: {demo.DEFAULT_RECIPE}" for name, demo in demos.items() if name != default)
    parser.add_argument(
        "--recipe",
        help=f"training recipe, a shipped name or a YAML file (default {demos[default].DEFAULT_RECIPE}{others})",
    )
    add_declared_options(parser, {name: demo.DEMO_OPTIONS for name, demo in demos.items()})
    parser.add_argument(
        "modality", nargs="?", default=default, metavar="|".join(demos), help=f"which demo (default {default})"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for training")
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from cpc.cli import CommandError

    demos = load_modules(registry.demos(), registry.DEFAULT_DEMO)  # imported already: the parser was built from them
    overrides, name = list(args.overrides), args.modality
    if "=" in name:  # `cpc demo --run-dir D key=value`: no demo named, the first word is an override
        overrides, name = [name, *overrides], registry.DEFAULT_DEMO
    if name not in demos:
        raise CommandError(
            f"cpc demo: {name!r} is not a demo; expected one of {', '.join(demos)} or key=value overrides"
        )
    error = _other_demos_options(args, name, demos)
    if error:
        raise CommandError(f"{_command(name)}: {error}")
    demos[name].demo_from_args(args, overrides)
    return 0


def _other_demos_options(args: argparse.Namespace, name: str, demos: dict[str, ModuleType]) -> str | None:
    """When an option that only other demos take was given: what to say, e.g. "--corpus and --ctc are speech
    options", listing every such option (those without a default of their own) with the demos they belong to."""
    owners: dict[str, list[str]] = {}  # flag -> the demos that declare it
    for owner, demo in demos.items():
        for flag, keywords in demo.DEMO_OPTIONS.items():
            if flag not in demos[name].DEMO_OPTIONS and keywords.get("default") is None:
                owners.setdefault(flag, []).append(owner)
    if not any(getattr(args, destination(flag)) for flag in owners):
        return None
    flags, demo_names = list(owners), list(dict.fromkeys(owner for names in owners.values() for owner in names))
    plural = len(flags) > 1
    article = "" if plural else "an " if demo_names[0][0] in "aeiou" else "a "
    text = f"{listing(flags)} {'are' if plural else 'is'} {article}{listing(demo_names)} option{'s' if plural else ''}"
    if len(demo_names) == 1 and demo_names[0] != registry.DEFAULT_DEMO:
        text += f" ({_command(demo_names[0])})"
    return text


if __name__ == "__main__":
    import sys

    import cpc.cli

    sys.exit(cpc.cli.main(["demo", *sys.argv[1:]]))
