"""Hours of data and training steps against speech scores: the table and plot of docs/data-scale.md.

    python benchmarks/data_scale.py --json docs/data_scale.json \\
        --arm 3:4000:runs/scale/3h-4000 --baseline 3:mfcc:runs/base/3h-mfcc --plot docs/data_scale.png

``--arm HOURS:STEPS:RUN_DIR`` reads the per-seed rows of a ``cpc compare ... --seeds`` run's
report.json; ``--baseline HOURS:FEATURES:PREFIX`` reads PREFIX-phone.json, PREFIX-speaker.json
and PREFIX-abx.json as ``cpc probe phone|speaker`` and ``cpc abx`` write them with ``--json``.
Both replace the rows of the same hours, steps (or features) and seed in the JSON file; then the
markdown table (mean and range over seeds, the baselines beside) is printed and, with
``--plot``, each score is drawn against hours of data, one line per step count.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from cpc.speech.compare import seed_summary

SCORES = [  # key, title, lower is better
    ("phone", "phone %", False),
    ("speaker", "speaker %", False),
    ("abx_within", "ABX within %", True),
    ("abx_across", "ABX across %", True),
]

STEP_COLOURS = ["C0", "C3", "C4"]
BASELINE_COLOURS = {"mfcc": "C2", "logmel": "C1"}


def read_arm(spec: str) -> list[dict]:
    """HOURS:STEPS:RUN_DIR -> one row per seed of RUN_DIR/report.json."""
    hours, steps, run_dir = spec.split(":", 2)
    report = json.loads((Path(run_dir) / "report.json").read_text())
    return [
        {"hours": float(hours), "steps": int(steps), "seed": row["seed"], **{key: row.get(key) for key, *_ in SCORES}}
        for row in report["rows"]
    ]


def read_baseline(spec: str) -> dict:
    """HOURS:FEATURES:PREFIX -> one row of the baseline's scores."""
    hours, features, prefix = spec.split(":", 2)
    phone = json.loads(Path(f"{prefix}-phone.json").read_text())
    speaker = json.loads(Path(f"{prefix}-speaker.json").read_text())
    abx = json.loads(Path(f"{prefix}-abx.json").read_text())
    return {
        "hours": float(hours),
        "features": features,
        "phone": phone["accuracy"],
        "speaker": speaker["accuracy"],
        "abx_within": abx["within"],
        "abx_across": abx["across"],
    }


def merge(old: list[dict], new: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """``old`` with every row that ``new`` has (same ``keys``) replaced, sorted by ``keys``."""
    fresh = {tuple(row[k] for k in keys) for row in new}
    rows = [row for row in old if tuple(row[k] for k in keys) not in fresh] + new
    return sorted(rows, key=lambda row: tuple(row[k] for k in keys))


def arm_summaries(runs: list[dict]) -> dict[tuple[float, int], dict]:
    """(hours, steps) -> {"seeds": [...], score: {"mean", "min", "max"}} over the arm's seeds (scores with values)."""
    return seed_summary([{**row, "arm": (row["hours"], row["steps"])} for row in runs])


def table(data: dict) -> str:
    """Markdown: for each build (hours), its CPC arms as mean (min-max) over seeds, then its baselines."""
    lines = [
        "| hours (speakers) | features | seeds | " + " | ".join(title for _, title, _ in SCORES) + " |",
        "|---|---|---:|" + "---:|" * len(SCORES),
    ]
    speakers = data.get("speakers", {})
    rows = []  # (hours, order, line)
    for (hours, steps), summary in arm_summaries(data["runs"]).items():
        cells = [
            "{mean:.1f} ({min:.1f}–{max:.1f})".format(**summary[key]) if key in summary else "–" for key, *_ in SCORES
        ]
        rows.append((hours, steps, f"CPC, {steps} steps | {len(summary['seeds'])} | " + " | ".join(cells)))
    for row in data["baselines"]:
        cells = [f"{row[key]:.1f}" for key, *_ in SCORES]
        rows.append((row["hours"], float("inf"), f"{row['features']} | | " + " | ".join(cells)))
    for hours, _, line in sorted(rows, key=lambda row: row[:2]):
        lines.append(f"| {hours:g} ({speakers.get(f'{hours:g}', '?')}) | {line} |")
    return "\n".join(lines) + "\n"


def draw_arm(axis, runs: list[dict], steps: int, key: str, colour: str, minus: dict | None = None) -> None:
    """One step count's seed means as a line against hours, each seed a dot; ``minus``: hours -> baseline row."""
    per_hours: dict[float, list[float]] = {}
    for row in runs:
        if row["steps"] == steps and row.get(key) is not None and (minus is None or row["hours"] in minus):
            offset = 0.0 if minus is None else minus[row["hours"]][key]
            per_hours.setdefault(row["hours"], []).append(row[key] - offset)
    if not per_hours:
        return
    hours = sorted(per_hours)
    axis.plot(hours, [statistics.fmean(per_hours[h]) for h in hours], "o-", color=colour, label=f"CPC, {steps} steps")
    for h in hours:
        axis.plot([h] * len(per_hours[h]), per_hours[h], ".", color=colour, alpha=0.5)


def plot(data: dict, out: Path) -> None:
    """Phone and ABX against hours: each seed a dot, the seed mean a line per step count, the baselines dashed."""
    from cpc.eval.report import pyplot

    plt = pyplot()
    # The speaker probe's classes grow with the build (12, 36, 60 speakers): its scores are not on one scale.
    scores = [score for score in SCORES if score[0] != "speaker"]
    figure, axes = plt.subplots(1, len(scores) + 1, figsize=(4.4 * (len(scores) + 1), 3.6))
    runs = data["runs"]
    step_counts = sorted({row["steps"] for row in runs})
    mfcc = {row["hours"]: row for row in data["baselines"] if row["features"] == "mfcc"}
    for axis, (key, title, lower_better) in zip(axes[:-1], scores, strict=True):
        for index, steps in enumerate(step_counts):
            draw_arm(axis, runs, steps, key, STEP_COLOURS[index % len(STEP_COLOURS)])
        for features in sorted({row["features"] for row in data["baselines"]}):
            rows = sorted((row["hours"], row[key]) for row in data["baselines"] if row["features"] == features)
            axis.plot(*zip(*rows, strict=True), "x--", color=BASELINE_COLOURS.get(features, "C7"), label=features)
        axis.set_title(f"{title} ({'lower' if lower_better else 'higher'} is better)")
    gap = axes[-1]  # the yardstick moves with the build's test split: CPC against MFCC on the same build
    for index, steps in enumerate(step_counts):
        draw_arm(gap, runs, steps, "abx_within", STEP_COLOURS[index % len(STEP_COLOURS)], minus=mfcc)
    gap.axhline(0, color=BASELINE_COLOURS["mfcc"], linestyle="--", label="mfcc")
    gap.set_title("ABX within, CPC minus MFCC (points)")
    for axis in axes:
        axis.set_xlabel("hours of training audio")
        axis.set_xticks(sorted({row["hours"] for row in runs}))
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    gap.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(out, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True, help="the collected rows (read if present, rewritten)")
    parser.add_argument("--arm", action="append", default=[], metavar="HOURS:STEPS:RUN_DIR")
    parser.add_argument("--baseline", action="append", default=[], metavar="HOURS:FEATURES:PREFIX")
    parser.add_argument("--plot", type=Path, help="write the plot here (PNG)")
    args = parser.parse_args()
    data = json.loads(args.json.read_text()) if args.json.is_file() else {"runs": [], "baselines": []}
    arms, baselines = [], []
    for option, specs, read, rows in (
        ("--arm", args.arm, read_arm, arms),
        ("--baseline", args.baseline, read_baseline, baselines),
    ):
        for spec in specs:
            try:
                result = read(spec)
            except (OSError, ValueError, KeyError) as error:  # a malformed spec, a missing or foreign JSON file
                parser.error(f"{option} {spec}: {type(error).__name__}: {error}")
            rows.extend(result if isinstance(result, list) else [result])
    data["runs"] = merge(data["runs"], arms, ("hours", "steps", "seed"))
    data["baselines"] = merge(data["baselines"], baselines, ("hours", "features"))
    args.json.write_text(json.dumps(data, indent=1) + "\n")
    print(table(data))
    if args.plot:
        plot(data, args.plot)


if __name__ == "__main__":
    main()
