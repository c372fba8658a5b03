"""Real-time factor of feature extraction: an imported CPC_audio "CPC big" model beside ``speech/paper``.

    OMP_NUM_THREADS=1 python benchmarks/cpc_audio_rtf.py --threads 1 --rounds 5

Both models run ``extract_features(layer="context")`` in inference mode on the same random batch
(``--batch-size`` x ``--seconds``), alternating, so that load on a shared machine hits both arms
alike; medians are reported. The imported architecture is CPC_audio's "CPC big" (torch.hub
``CPC_audio(pretrained=True)``): 512-channel encoder with its channel norm, a 2-layer LSTM of 512.
Weights do not change the speed, so none are downloaded.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import cpc
from cpc.config import load_config
from cpc.speech.cpc_audio import model_config

CPC_BIG = {"hiddenEncoder": 512, "hiddenGar": 512, "nLevelsGRU": 2, "arMode": "LSTM", "normMode": "layerNorm"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {
        "imported CPC_audio CPC big (512, LSTM 512 x 2)": cpc.build_model({"model": model_config(CPC_BIG)[0]}).eval(),
        "speech/paper (512, GRU 256)": cpc.build_model(load_config("speech/paper")).eval(),
    }
    waveforms = 0.1 * torch.randn(args.batch_size, int(args.seconds * 16000))
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():  # warm-up
            model.extract_features(waveforms[:1, :16000])
        for _ in range(args.rounds):
            for name, model in models.items():
                start = time.perf_counter()
                model.extract_features(waveforms)
                times[name].append(time.perf_counter() - start)
    audio = args.batch_size * args.seconds
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name}: {audio / median:.1f}x real time (median {median:.2f} s for {audio:.0f} s of audio; runs {', '.join(f'{v:.2f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
