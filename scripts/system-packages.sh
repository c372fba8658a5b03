#!/usr/bin/env bash
# The Debian/Ubuntu packages cpc's data comes from, installed with apt-get (as root) unless they
# are there already. The README's two commands and .ci/run call this.
set -euo pipefail
packages=(
    festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts  # text to speech: Festival and three voices (cpc data synth)
    espeak-ng                                                      # text to speech: espeak-ng voices (cpc data synth)
    bible-kjv                                                      # sentences for the speech corpus; books for text CPC
    fortunes                                                       # books for text CPC
    dataset-fashion-mnist                                          # images for image CPC
)
if command -v festival >/dev/null && command -v espeak-ng >/dev/null && command -v bible >/dev/null \
    && test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
    && test -f /usr/share/games/fortunes/fortunes; then
    exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
