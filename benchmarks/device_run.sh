#!/usr/bin/env bash
# One call on a lent GPU machine (see benchmarks/device_run.py): trains the held-out recipe, the shipped
# recipe and the UNet baseline at native resolution in parallel, then times GPU sampling.
# Needs, carried beside the tree: .device/whl (monai, nibabel wheels) and .device/cases (from `prepare`).
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .device/whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/LDSegSlicer PYTHONUNBUFFERED=1
out=${OUT:-/tmp/device-out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
configs=${CONFIGS:-configs/knee-bones-native-knee4-held-out.yaml configs/knee-bones-native.yaml configs/baseline-knee-native.yaml}
# shellcheck disable=SC2086
python3 benchmarks/device_run.py train .device/cases $configs --seconds "${TRAIN_SECONDS:-420}" --threads "${THREADS:-5}" \
    2>&1 | tee "$out/train.log" | grep -v '"step"' || true
python3 benchmarks/device_run.py time .device/cases knee4 runs/knee-bones-native-knee4-held-out/model 2>&1 | tee "$out/gpu-timing.txt" || true
for run in knee-bones-native-knee4-held-out knee-bones-native baseline-knee-native; do
    cp "runs/$run/model/model.safetensors" "$out/$run.safetensors" || true
done
tar -czf "$out/runs.tar.gz" runs/*/model/*.json runs/*/train-log.jsonl || true
