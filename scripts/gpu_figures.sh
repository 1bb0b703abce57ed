#!/usr/bin/env bash
# The docs' GPU figures (docs/latency.md, docs/costs.md, docs/reproduction.md), in one pass on one CUDA
# machine (each stage under its own deadline, so a slow stage cannot eat the next one's time):
#   1. the MedMNIST v2 reproduction (sweeps/medmnist-v2.toml), one process per run, all on the one GPU
#   2. bench latency: every registered backbone at 224 px, batch 1 and 256, fp16 autocast, channels_last
#   3. bench latency: timm's RTX 4090 comparison set at batch 1024, fp16 autocast, NCHW (timm benchmark.py --amp)
#   4. DermaMNIST at 224 px, ResNet-50 and EfficientNet-B0, 2 epochs each: epoch time, images/s, NVML utilisation
# Usage: bash scripts/gpu_figures.sh OUT_DIR [TOTAL_SECONDS]
# Results go to a scratch results folder (tmpfs: checkpoints are written every epoch) and are packed into
# OUT_DIR/gpu-results.tgz after every stage; merge what you want with `tar -xzf` into results/.
# QUICK=1 shrinks every stage (CPU smoke test of this script).
set -u
out=${1:?usage: gpu_figures.sh OUT_DIR [TOTAL_SECONDS]}
total=${2:-480}
work=${BENCH_GPU_WORK:-/dev/shm/bench-gpu}
quick=${QUICK:-0}
repro_cap=${REPRO_SECONDS:-290}  # the reproduction runs first (accuracy is what a short lease must not lose)
start=$SECONDS
mkdir -p "$out" "$work"
export BENCH_CACHE=$work/cache

left() { echo $((total - (SECONDS - start))); }
pack() { tar -czf "$out/gpu-results.tgz" -C "$work" --exclude='*.ckpt' --exclude=cache results 2>/dev/null; }
stage() { echo "=== $1 (t=$((SECONDS - start)) s, $(left) s left)"; }

if [ "$quick" = 1 ]; then
    lat_main=(--backbones resnet18,efficientnet_b0 --batch-sizes 1,4 --budget 0.5 --device cpu)
    lat_timm=(--backbones resnet50 --batch-sizes 8 --budget 0.5 --device cpu)
    epochs=(--resolution 32 --epochs 1 --device cpu)
    repro=(--epochs 1 --device cpu)
    runs="resnet18:pneumoniamnist:0 resnet18_cifar_stem:pneumoniamnist:1"
else
    lat_main=(--resolution 224 --batch-sizes 1,256 --precisions fp16 --channels-last --budget 2 --device cuda)
    lat_timm=(--backbones resnet50,efficientnet_b0,densenet121,convnext_tiny,vgg16 --resolution 224
              --batch-sizes 1024 --precisions fp16 --budget 3 --device cuda)
    epochs=(--resolution 224 --epochs 2 --device cuda)
    repro=(--device cuda)
    runs=""
    for seed in 0 1 2; do
        for backbone in resnet18_cifar_stem resnet18; do
            for dataset in pneumoniamnist dermamnist; do runs="$runs $backbone:$dataset:$seed"; done
        done
    done
fi

stage "MedMNIST v2 reproduction: $(echo $runs | wc -w) runs in parallel"
mkdir -p "$work/results/logs"
pids=()
for run in $runs; do
    IFS=: read -r backbone dataset seed <<<"$run"
    cap=$((repro_cap < $(left) - 15 ? repro_cap : $(left) - 15))
    OMP_NUM_THREADS=1 timeout "$cap" bench run --backbones "$backbone" --datasets "$dataset" \
        --protocol medmnist-v2 --seeds "$seed" --resolution 28 "${repro[@]}" --results-dir "$work/results/reproduction" \
        >"$work/results/logs/$backbone-$dataset-$seed.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
grep -h "run(s) done" "$work"/results/logs/*.log
pack
stage "latency: registered backbones"
timeout 110 bench latency "${lat_main[@]}" --results-dir "$work/results/latency-registered"
pack
stage "latency: timm comparison set"
timeout 45 bench latency "${lat_timm[@]}" --results-dir "$work/results/latency-timm"
pack
stage "DermaMNIST epoch time"
timeout 90 bench run --backbones resnet50,efficientnet_b0 --datasets dermamnist --protocol scratch \
    "${epochs[@]}" --results-dir "$work/results/epoch-time"
pack
stage "done"
ls -la "$out"
