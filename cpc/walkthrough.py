"""A walkthrough of CPC for learners: one batch of raw audio through every stage, with shapes,
the line of code for each equation, and one figure per stage.

    python -m cpc.walkthrough --out walkthrough [--steps 60] [--checkpoint PATH]

Shape legend (as in every model file): B batch, S samples, T frames, C latent channels,
H context size, K steps ahead, N negatives.

    raw audio x          (B, S)          two 1.28 s windows of the committed sample corpus
    z = g_enc(x)         (B, T, C)       encoder: strided convolutions, one frame per 10 ms
    c = g_ar(z)          (B, T, H)       context: a GRU, causal
    W_k c_t              (B, T, K, C)    predictions, one per step ahead k           (eq. 3)
    negatives            (B, T, K, N)    frame indices drawn from the batch, never the positive
    scores z_j^T W_k c_t (B, T, K, 1+N)  positive first                              (eq. 3)
    InfoNCE              ()              cross-entropy of the positive               (eq. 4)

By default it first trains the tiny recipe for ``--steps`` steps on the sample (about a
minute on a laptop CPU), because a fresh model's predictors start at zero and every score is
0; ``--checkpoint`` uses a trained model instead. docs/walkthrough.md reads the output.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import tempfile
from pathlib import Path

import numpy as np
import torch

from cpc import infonce, negatives, objectives, predictors
from cpc.eval.report import pyplot
from cpc.speech.audio import SAMPLE_RATE

WINDOW = 20480  # samples: the paper's 1.28 s training window


def code_line(function, needle: str) -> str:
    """ "cpc/<file>.py:<line>" of the first line of ``function`` containing ``needle``: where to read an equation."""
    lines, first = inspect.getsourcelines(function)
    for offset, line in enumerate(lines):
        if needle in line:
            path = Path(inspect.getsourcefile(function))
            return f"{path.parent.name}/{path.name}:{first + offset}"
    raise LookupError(f"{needle!r} is not in {function.__qualname__}")


def show(name: str, tensor: torch.Tensor, legend: str, where: str) -> None:
    """One stage: its name, shape, the shape legend's letters and the code line; values of small results."""
    values = ""
    if tensor.dim() == 0:
        values = f"  = {tensor.item():.4f}"
    elif tensor.dim() == 1 and tensor.is_floating_point():
        values = "  = [" + ", ".join(f"{v:.2f}" for v in tensor.tolist()) + "]"
    print(f"{name:<22} {str(tuple(tensor.shape)):<18} {legend:<18} {where}{values}")


def load_windows(count: int = 2) -> torch.Tensor:
    """The first ``count`` utterances of the committed sample, cut to one training window each: (B, S)."""
    import soundfile

    from cpc.resources import sample_corpus

    files = sorted(sample_corpus().rglob("*.flac"))[:count]
    windows = [soundfile.read(path, dtype="float32")[0][:WINDOW] for path in files]
    return torch.from_numpy(np.stack([np.pad(w, (0, WINDOW - len(w))) for w in windows]))


def trained_model(steps: int, checkpoint: str | None):
    import cpc
    from cpc.config import load_config
    from cpc.resources import sample_corpus
    from cpc.train import train

    if checkpoint:
        return cpc.load(checkpoint, needs="speech", what="cpc walkthrough")
    config = load_config(
        "speech/tiny",
        [
            f"data.root={sample_corpus()}",
            f"train.max_steps={max(steps, 1)}",
            "train.progress=false",
            "train.log_every=10",
            "train.valid_every=100000",
            "train.checkpoint_every=100000",
            "data.num_workers=0",
            "train.valid_batches=0",
            f"optim.warmup_steps={min(50, max(steps, 1))}",
        ],
    )
    if steps == 0:
        torch.manual_seed(0)
        from cpc.model import build_model

        return build_model(config)
    with tempfile.TemporaryDirectory() as run_dir:
        train(config, run_dir)
        return cpc.load(Path(run_dir) / "checkpoints" / "last.pt")


def walkthrough(out: str | Path, *, steps: int = 60, checkpoint: str | None = None) -> dict:
    """Run every stage on one batch, print shapes and code lines, draw one figure per stage; -> the InfoNCE metrics."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plt = pyplot()
    model = trained_model(steps, checkpoint).eval()
    generator = torch.Generator().manual_seed(0)

    def figure(name: str, draw, size=(6, 3.2)) -> None:
        fig, axis = plt.subplots(figsize=size)
        draw(fig, axis)
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)

    print("Shape legend: B batch, S samples, T frames, C latent channels, H context size, K steps ahead, N negatives\n")
    print(f"{'stage':<22} {'shape':<18} {'legend':<18} code")
    with torch.no_grad():
        waveforms = load_windows()  # (B, S)
        show("raw audio x", waveforms, "(B, S)", "cpc/speech/windows.py (random windows)")
        figure(
            "1_waveform.png",
            lambda f, a: (
                a.plot(np.arange(WINDOW) / SAMPLE_RATE, waveforms[0].numpy(), lw=0.4),
                a.set_xlabel("seconds"),
                a.set_title("stage 1: raw audio, first window"),
            ),
        )

        latents, lengths = model.encoder(waveforms)  # (B, T, C)
        show("z = g_enc(x)", latents, "(B, T, C)", code_line(type(model.encoder).forward, "def forward"))
        figure(
            "2_latents.png",
            lambda f, a: (
                f.colorbar(a.imshow(latents[0].T.numpy(), aspect="auto", origin="lower")),
                a.set_xlabel("frame t"),
                a.set_ylabel("channel"),
                a.set_title(f"stage 2: latents z, {model.downsample_rate} samples per frame"),
            ),
        )

        context, _ = model.context(latents)  # (B, T, H)
        show("c = g_ar(z)", context, "(B, T, H)", code_line(type(model.context).forward, "return"))
        figure(
            "3_context.png",
            lambda f, a: (
                f.colorbar(a.imshow(context[0].T.numpy(), aspect="auto", origin="lower")),
                a.set_xlabel("frame t"),
                a.set_ylabel("unit"),
                a.set_title("stage 3: context c_t (causal GRU)"),
            ),
        )

        prediction = model.predictors(context)  # (B, T, K, C)
        show(
            "W_k c_t (eq. 3)",
            prediction,
            "(B, T, K, C)",
            code_line(predictors.LinearPredictors.forward, "self.maps(context)"),
        )
        t = latents.shape[1] // 2  # the context we follow from here on
        figure(
            "4_predictions.png",
            lambda f, a: (
                f.colorbar(a.imshow(prediction[0, t].numpy(), aspect="auto")),
                a.set_xlabel("channel"),
                a.set_ylabel("k - 1"),
                a.set_title(f"stage 4: W_k c_t for t = {t}, every k"),
            ),
        )

        criterion = model.criterion
        offsets = model.predictors.offsets
        num_frames = latents.shape[1]
        positives, valid = negatives.positive_indices(lengths, num_frames, offsets)  # (B, T, K)
        drawn = negatives.sample_negatives(
            lengths, num_frames, offsets, criterion.num_negatives, generator=generator
        )  # (B, T, K, N)
        show("negatives", drawn, "(B, T, K, N)", code_line(negatives._sample_batch, "step over the positive"))
        candidates = torch.cat([positives[..., None], drawn], dim=-1)  # (B, T, K, 1+N)
        show("candidates", candidates, "(B, T, K, 1+N)", "positive first, index 0")

        def draw_negatives(f, a):
            for k in range(len(offsets)):
                flat = drawn[0, t, k].numpy()
                a.scatter(flat, np.full_like(flat, offsets[k]), s=4, c="grey")
                a.scatter([positives[0, t, k].item()], [offsets[k]], s=18, c="red")
            a.axvline(num_frames - 0.5, color="k", lw=0.5)
            a.set_xlabel("flat frame index in the batch (b * T + t)")
            a.set_ylabel("k")
            a.set_title(f"stage 5: negatives (grey) and the positive z_(t+k) (red), t = {t}")

        figure("5_negatives.png", draw_negatives, size=(7, 3.2))

        scores = infonce.score_candidates(prediction, latents, candidates)  # (B, T, K, 1+N)
        show(
            "scores z_j^T W_k c_t",
            scores,
            "(B, T, K, 1+N)",
            code_line(infonce._GatheredScores.forward, "@ flat_latents.T"),
        )
        figure(
            "6_scores.png",
            lambda f, a: (
                f.colorbar(a.imshow(scores[0, t].numpy(), aspect="auto")),
                a.set_xlabel("candidate (0 = positive)"),
                a.set_ylabel("k - 1"),
                a.set_title(f"stage 6: the score matrix of one context (t = {t})"),
            ),
        )

        out_metrics = objectives.infonce(scores, valid)
        show("InfoNCE loss (eq. 4)", out_metrics["loss"], "()", code_line(infonce.info_nce, "torch.logsumexp"))
        show("accuracy per k", out_metrics["accuracy_per_step"], "(K,)", code_line(infonce.info_nce, "correct ="))
        show(
            "MI bound per k",
            out_metrics["mutual_information"],
            "(K,)",
            code_line(infonce.info_nce, "mutual_information = math.log"),
        )

        def draw_accuracy(f, a):
            a.plot(offsets, out_metrics["accuracy_per_step"].numpy(), "o-", label="accuracy (positive beats all N)")
            a.axhline(1 / (criterion.num_negatives + 1), color="grey", ls="--", label="chance 1/(N+1)")
            a.set_xlabel("steps ahead k")
            a.set_ylim(0, 1)
            a.legend(fontsize=8)
            a.set_title("stage 7: InfoNCE accuracy against k")

        figure("7_accuracy_per_k.png", draw_accuracy)

        print("\nThe other objectives on the same candidates (cpc/objectives.py):")
        scored = objectives.Candidates(scores, prediction, latents, candidates)
        others = {
            "nt_xent (tau 0.1)": (objectives.nt_xent(scored.cosine(), valid, temperature=0.1), objectives.nt_xent),
            "margin (m 1)": (
                objectives.margin_contrastive(scored.squared_distances(), valid, margin=1.0),
                objectives.margin_contrastive,
            ),
            "triplet (semi-hard)": (
                objectives.triplet(scored.squared_distances(), valid, margin=0.2),
                objectives.triplet,
            ),
            "binary (wav2vec)": (objectives.binary_logistic(scores, valid), objectives.binary_logistic),
        }
        for name, (metrics, function) in others.items():
            print(
                f"  {name:<20} loss {metrics['loss'].item():.4f}   mean accuracy {metrics['accuracy_per_step'].mean().item():.3f}   "
                f"{code_line(function, 'L =')}"
            )
    print(f"\nfigures in {out}: " + ", ".join(sorted(p.name for p in out.glob("*.png"))))
    return out_metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cpc.walkthrough", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="walkthrough", help="folder for the figures (default ./walkthrough)")
    parser.add_argument(
        "--steps", type=int, default=60, help="training steps of the tiny recipe on the sample first (0: a fresh model)"
    )
    parser.add_argument("--checkpoint", help="a trained checkpoint instead of training")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    walkthrough(args.out, steps=args.steps, checkpoint=args.checkpoint)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
