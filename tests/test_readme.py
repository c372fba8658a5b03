"""The README and the docs say what the code does: short README, links that resolve, commands that run.

* The README is at most 200 lines, and its layout table names every module and package of cpc/.
* Every relative link (and image) in the README and the reference documents points to a file
  that exists, and a ``#fragment`` to a heading of that file.
* Every ``cpc`` command in a fenced ``bash`` block of the README and the docs parses with the
  ``cpc`` command line as it is (each option exists, ``key=value`` overrides only where the
  command takes them), and its overrides load with its recipe (each key exists, each value fits).
* The README's "Train, extract, probe" commands and its Python snippet run as written, in a
  temporary folder whose ``data/sample`` is a few utterances of the committed sample. The one
  change: training is cut to 2 steps by one appended override (``train.max_steps=2``).
* The README's test command is ``.ci/run``'s, and its ``apt-get install`` names the packages
  ``scripts/system-packages.sh`` installs.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import re
import shlex
from pathlib import Path

import pytest
import torch

import cpc
import cpc.cli

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCUMENTS = [
    README,
    *sorted((REPO / "docs").glob("*.md")),
    REPO / "benchmarks" / "README.md",
    REPO / "benchmarks" / "abx" / "README.md",
    REPO / "data" / "README.md",
]
RUN_SECTION = "Train, extract, probe"  # the README section whose commands the test runs
DEMO_RECIPES = {"speech": "speech/tiny", "image": "image/fashion_mnist", "text": "text/books"}

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def fenced_blocks(path: Path) -> list[tuple[str, str, str]]:
    """(section heading, language, code) of each fenced block of a markdown file."""
    text = path.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        headings = re.findall(r"^#+ (.*)$", text[: match.start()], re.M)
        blocks.append((headings[-1] if headings else "", match.group(1), match.group(2)))
    return blocks


def shell_commands(code: str) -> list[list[str]]:
    """The simple commands of a bash block: continuation lines joined, comments dropped, split at ``&&``."""
    commands = []
    for line in code.replace("\\\n", " ").splitlines():
        line = line.replace("$(which cpc)", "cpc")
        words = shlex.split(line, comments=True)
        while words:
            cut = words.index("&&") if "&&" in words else len(words)
            commands.append(words[:cut])
            words = words[cut + 1 :]
    return [command for command in commands if command]


def cpc_arguments(command: list[str]) -> list[str] | None:
    """The arguments after ``cpc`` (also ``.venv/bin/cpc``, or ``cpc`` run by ``torchrun``), or None."""
    for index, word in enumerate(command):
        if word == "cpc" or word.endswith("/bin/cpc"):
            return command[index + 1 :]
        if index == 0 and word != "torchrun":
            return None
    return None


def readme_cpc_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in DOCUMENTS:
        for _section, language, code in fenced_blocks(path):
            if language == "bash":
                for command in shell_commands(code):
                    arguments = cpc_arguments(command)
                    if arguments is not None:
                        found.append((f"{path.relative_to(REPO)}: {shlex.join(command)}", arguments))
    return found


@functools.cache
def cpc_parser() -> argparse.ArgumentParser:
    """The ``cpc`` parser, built as :func:`cpc.cli.main` builds it."""
    parser = argparse.ArgumentParser(prog="cpc", allow_abbrev=False)
    parser.add_argument("-v", "--verbose", action="store_true")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in cpc.cli.COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def parse(arguments: list[str]) -> argparse.Namespace:
    """Parse as :func:`cpc.cli.main` does: what argparse leaves over must be ``key=value`` overrides."""
    args, unknown = cpc_parser().parse_known_args(arguments)
    overrides = [item for item in unknown if "=" in item and not item.startswith("-")]
    if len(overrides) != len(unknown) or (overrides and not hasattr(args, "overrides")):
        raise AssertionError(f"unrecognized arguments: {' '.join(unknown)}")
    args.overrides = list(getattr(args, "overrides", None) or []) + overrides
    return args


def recipes_of(args: argparse.Namespace) -> list[str]:
    """The recipes a parsed command loads its overrides into."""
    if args.command == "demo":
        return [args.recipe or DEMO_RECIPES[args.modality]]
    recipe = getattr(args, "recipe", None)
    return recipe if isinstance(recipe, list) else [recipe or "speech/tiny"]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    heading = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def test_readme_is_at_most_200_lines():
    lines = README.read_text().count("\n")
    assert lines <= 200, f"README.md has {lines} lines; move the detail to docs/"


def test_the_layout_names_every_module_and_package():
    text = README.read_text()
    layout = text[text.index("## Layout") :]
    package = REPO / "cpc"
    entries = [f"cpc/{path.name}" for path in package.glob("*.py")]
    entries += [f"cpc/{path.name}/" for path in package.iterdir() if (path / "__init__.py").is_file()]
    missing = [entry for entry in sorted(entries) if f"`{entry}`" not in layout]
    assert not missing, f"README.md's layout table leaves out {missing}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: str(path.relative_to(REPO)))
def test_relative_links_resolve(document):
    text = re.sub(FENCE, "", document.read_text())
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, fragment = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif fragment and linked.suffix == ".md":
            headings = {
                slug(heading) for heading in re.findall(r"^#+ (.*)$", re.sub(FENCE, "", linked.read_text()), re.M)
            }
            if fragment not in headings:
                broken.append(f"{target} (no heading #{fragment} in {linked.name})")
    assert not broken, f"{document.relative_to(REPO)}: {broken}"


COMMANDS = readme_cpc_commands()


def test_the_readme_has_commands():
    readme = [name for name, _ in COMMANDS if name.startswith("README.md")]
    assert len(readme) >= 10, readme


@pytest.mark.parametrize("name,arguments", COMMANDS, ids=[name for name, _ in COMMANDS])
def test_command_parses_and_its_overrides_load(name, arguments):
    args = parse(arguments)
    if args.overrides:
        for recipe in recipes_of(args):
            cpc.load_config(recipe, args.overrides)


def test_readme_test_command_is_the_ci_command():
    ci = (REPO / ".ci" / "run").read_text()
    begin, end = "# --- README test command, begin ---\n", "# --- README test command, end ---"
    ci_command = ci[ci.index(begin) + len(begin) : ci.index(end)]
    blocks = [
        code
        for _, language, code in fenced_blocks(README)
        if language == "bash" and code.rstrip().endswith("bin/pytest")
    ]
    assert blocks == [ci_command], "the README's test command and .ci/run differ"


def test_readme_apt_packages_are_the_scripts():
    script = (REPO / "scripts" / "system-packages.sh").read_text()
    array = script[script.index("packages=(") + len("packages=(") : script.index("\n)")]
    packages = {word for line in array.splitlines() for word in shlex.split(line, comments=True)}
    installs = [
        command
        for _, language, code in fenced_blocks(README)
        if language == "bash"
        for command in shell_commands(code)
        if "install" in command and "apt-get" in command
    ]
    assert installs, "no apt-get install in the README"
    for command in installs:
        assert {word for word in command[command.index("install") + 1 :] if not word.startswith("-")} == packages


def sample_subset(target: Path, train: int = 6, test: int = 2) -> None:
    """A few utterances of data/sample, in its layout (audio linked, labels and splits cut)."""
    sample = REPO / "data" / "sample"
    keep_train = (sample / "train_split.txt").read_text().split()[:train]
    keep_test = (sample / "test_split.txt").read_text().split()[:test]
    keep = set(keep_train + keep_test)
    target.mkdir(parents=True)
    for audio in sample.glob("*/*/*.flac"):
        if audio.stem in keep:
            (target / audio.parent.relative_to(sample)).mkdir(parents=True, exist_ok=True)
            (target / audio.relative_to(sample)).symlink_to(audio)
    (target / "train_split.txt").write_text("\n".join(keep_train) + "\n")
    (target / "test_split.txt").write_text("\n".join(keep_test) + "\n")
    (target / "phones.txt").write_text((sample / "phones.txt").read_text())
    alignments = [line for line in (sample / "alignments.txt").read_text().splitlines() if line.split()[0] in keep]
    (target / "alignments.txt").write_text("\n".join(alignments) + "\n")


@pytest.mark.slow
def test_readme_train_extract_probe_and_python_run_as_written(tmp_path, monkeypatch):
    sample_subset(tmp_path / "data" / "sample")
    (tmp_path / "recipes").symlink_to(REPO / "recipes")
    monkeypatch.chdir(tmp_path)
    blocks = fenced_blocks(README)
    commands = [
        command
        for section, language, code in blocks
        if section == RUN_SECTION and language == "bash"
        for command in shell_commands(code)
    ]
    assert [cpc_arguments(command)[0] for command in commands] == ["train", "extract", "probe"]
    threads = torch.get_num_threads()
    try:
        for command in commands:
            arguments = cpc_arguments(command)
            if arguments[0] == "train":
                arguments = [*arguments, "train.max_steps=2"]
            assert cpc.cli.main(arguments) == 0, shlex.join(command)
        (python,) = [code for section, language, code in blocks if section == RUN_SECTION and language == "python"]
        namespace: dict = {}
        exec(compile(python, "README.md (Python)", "exec"), namespace)
        assert namespace["features"].shape[0] == 2 and namespace["frames"].tolist() == [200, 150]
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "runs" / "tiny" / "checkpoints" / "last.pt").is_file()
    assert len(list((tmp_path / "feats" / "sample").glob("*.npy"))) == 8
