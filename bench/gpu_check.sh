#!/usr/bin/env bash
# The GPU proof, in one pass on a CUDA machine (about 9 minutes on one H100):
#   1. the test suite's CUDA-marked tests (AMP bf16/fp16, NCCL under torchrun, batched
#      augmentation, the chunked cycle);
#   2. bench/step_speed.py for r18-kinetics and r50-in-kinetics at 224 px, batch 32, AMP:
#      step time vs the backbone floor and vs MoCo-v2, images/s, peak memory, cycle memory budget;
#   3. real `cacl pretrain` steps of both presets on the built-in world at 224 px (data loading,
#      LARS and checkpoints included): step time, images/s, peak memory from metrics.jsonl;
#   4. the learning benchmark's full table (bench/learning.py), cut at LEARNING_SECONDS.
# Usage: bash bench/gpu_check.sh OUT_DIR   (OUT_DIR gets the log and the raw results)
set -uo pipefail
out=${1:-bench/out/gpu_check}
mkdir -p "$out"
learning_seconds=${LEARNING_SECONDS:-300}
export PYTHONUNBUFFERED=1 COLUMNS=160
py=${PYTHON:-python3}

section() { echo; echo "=== $* ($(date -u +%H:%M:%S))"; }

section "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'bf16', torch.cuda.is_bf16_supported())"
nproc

section "install (no network: dependencies must already be there)"
$py -m pip install -q --no-deps --no-index --no-build-isolation -e . 2>&1 | tail -2

section "CUDA-marked tests"
$py -m pytest -q -m cuda tests/test_cuda.py 2>&1 | tail -15

for preset in r18-kinetics r50-in-kinetics; do
  section "step speed: $preset, 224 px, batch 32, AMP"
  $py bench/step_speed.py --preset "$preset" --set data.path=null --set model.init=null \
    --device cuda --amp auto --steps 5 --repeats 5
done

world=(--set data.path=null --set model.init=null --set world.size=256 --set world.clips=256
       --set data.num_workers=6 --set run.log_every=5 --set run.checkpoint_every=1000)
for preset in r18-kinetics r50-in-kinetics; do
  section "cacl pretrain: $preset on the built-in world at 224 px, 20 steps"
  $py -m cacl_cli pretrain --preset "$preset" "${world[@]}" --set schedule.steps=20 \
    --set schedule.warmup_steps=2 --device cuda --out "/tmp/gpu_check/$preset" 2>&1 | tail -4
  tail -n 3 "/tmp/gpu_check/$preset/metrics.jsonl" | $py -c "
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print(f\"step {r['step']}: {r['step_time']:.3f} s/step, {r['images_per_s']:.0f} images/s, \"
          f\"data wait {r['data_time']:.3f} s, peak {r.get('gpu_peak_gib', 0):.2f} GiB, loss {r['loss']:.3f}\")"
  cp "/tmp/gpu_check/$preset/metrics.jsonl" "$out/metrics-$preset.jsonl"
done

section "learning benchmark (cut at ${learning_seconds} s; results.jsonl keeps every finished probe)"
timeout "$learning_seconds" $py bench/learning.py --device cuda ${LEARNING_ARGS:-} \
  --out /tmp/gpu_check/learning 2>&1 | tail -25
$py bench/learning.py --device cuda ${LEARNING_ARGS:-} --out /tmp/gpu_check/learning \
  --summary-only 2>&1 | tail -12
cp /tmp/gpu_check/learning/results.jsonl "$out/learning-results.jsonl" 2>/dev/null
cp /tmp/gpu_check/learning/table.md "$out/learning-table.md" 2>/dev/null
cp /tmp/gpu_check/learning/probe-vs-steps.png "$out/learning-probe-vs-steps.png" 2>/dev/null
section "done"
