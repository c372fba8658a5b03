#!/usr/bin/env bash
# The GPU measurements, in one call on a GPU machine (see benchmarks/README.md):
#   checks (blocked scoring, shared negatives, the device corpus), cpc bench train on the paper
#   recipe at several batch sizes with the data path (corpus on the device) and profiles, the
#   encoder's layouts, the loader, torch.compile, and torchrun (nccl) training with a resume.
#   Everything lands in $OUT (results.tar.gz and log.txt).
# Usage there: bash benchmarks/gpu/run.sh   (wheels for omegaconf/soundfile in .whl, carried)
set -u
OUT=${OUT:-/tmp/out}; R=$OUT/r; mkdir -p $R
exec > >(tee $OUT/log.txt) 2>&1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee $R/env.txt
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name())" | tee -a $R/env.txt
pack() { tar -C $OUT --exclude=checkpoints -czf $OUT/results.tar.gz r; }  # after every stage: a killed run still brings back what it had
stage() { pack; echo; echo "=== $1 ($(date +%T))"; }
bench() { timeout 150 python3 -m cpc.cli bench train --recipe speech/paper --device cuda --skip-copied --steps 20 --warmup 5 \
  --data data.root=data/sample data.loading=device "$@"; }
stage checks
timeout 60 python3 benchmarks/gpu/check.py --json $R/checks.json
stage "paper recipe, exact per-prediction negatives (blocked scoring), channels-last encoder"
bench --batch-size 8 --batch-size 32 --batch-size 64 train.channels_last=true --json $R/bench-exact-cl.json
stage "paper recipe, shared negatives (batch_shared), Conv1d layout"
bench --batch-size 8 --batch-size 32 --batch-size 64 --batch-size 256 model.loss.negative_scope=batch_shared --json $R/bench-shared.json
stage "paper recipe, shared negatives, channels-last encoder, profiled"
bench --batch-size 8 --batch-size 32 --batch-size 64 --batch-size 256 --profile $R/profile model.loss.negative_scope=batch_shared \
  train.channels_last=true --json $R/bench-shared-cl.json
stage "torchrun --nproc_per_node=1 (nccl): 600 steps, then --resume to 800"
TR="train speech/paper --run-dir $R/run data.root=data/sample train.batch_size=32 model.loss.negative_scope=batch_shared
  model.predictor.init=zeros train.channels_last=true train.log_every=50 train.valid_every=200 train.checkpoint_every=200 train.progress=false"
timeout 120 torchrun --standalone --nproc_per_node=1 -m cpc.cli $TR train.max_steps=600
timeout 80 torchrun --standalone --nproc_per_node=1 -m cpc.cli $TR train.max_steps=800 --resume
stage "the DataLoader instead of the device corpus; torch.compile"
timeout 150 python3 -m cpc.cli bench train --recipe speech/paper --device cuda --skip-copied --steps 20 --warmup 5 --batch-size 64 \
  --data data.root=data/sample data.loading=loader data.num_workers=8 model.loss.negative_scope=batch_shared train.channels_last=true \
  --json $R/bench-loader-cl.json
bench --batch-size 256 model.loss.negative_scope=batch_shared train.channels_last=true train.compile=true --json $R/bench-compile-cl.json
stage done
pack && rm -rf $R
