#!/usr/bin/env bash
# The one run to make on a GPU machine (its parts' time limits add up to 12.5 minutes): every figure that
# docs/guide.md "Running on a GPU" needs, as JSON (and logs) under OUT (default ./gpu_check_out):
#   env.json                          torch / CUDA / device
#   pytest_gpu.log                    python -m pytest -m gpu (fp32 / bf16 training, prefetch on CUDA)
#   bench.json                        bench/step_profile.py: paper_faces and small, batch 96, fp32 and bf16
#   bench_cudnn_benchmark.json        the same for paper_faces bf16 with torch.backends.cudnn.benchmark
#   bench_compiled.json               paper_faces bf16 with torch.compile (compilation time included)
#   traces/                           torch.profiler chrome traces and op tables of the fp32 / bf16 runs
#   train_gm.json, train_joint.json   the stages' metrics after a short paper_faces run on a small set
#   curves_gm.json, curves_joint.json their loss curves; summary.json: each part's exit code and seconds
#
#   bash bench/gpu_check.sh [OUT]            # on the GPU machine, in an environment with CUDA torch
#   SMOKE=1 bash bench/gpu_check.sh [OUT]    # the same calls on CPU at tiny sizes (a few minutes)
# PYTHON=... picks the interpreter (default: python). A part that fails is recorded and the rest still run.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "${1:-./gpu_check_out}"
OUT="$(cd "${1:-./gpu_check_out}" && pwd)"
PY="${PYTHON:-python}"
export PYTHONPATH="$ROOT/src:$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 DVC_NO_ANALYTICS=1
cd "$ROOT"

if [ "${SMOKE:-0}" = 1 ]; then
  export OMP_NUM_THREADS=1
  DEV=cpu BATCH=2 STEPS=1 WARM=1 COMPILE_ARCH=small TESTS="tests/test_gpu.py tests/test_data_path.py"
  IDS=4 PER_ID=8 TRAIN_BATCH=4 GM_STEPS=2 JOINT_STEPS=2 CKPT=1 LOG=1
else
  DEV=cuda BATCH=96 STEPS=10 WARM=3 COMPILE_ARCH=paper_faces TESTS="tests"
  IDS=20 PER_ID=30 TRAIN_BATCH=96 GM_STEPS=20 JOINT_STEPS=50 CKPT=25 LOG=10
fi
: > "$OUT/parts.jsonl"

part() {  # part NAME TIMEOUT_S COMMAND...: run it, log to OUT/NAME.log, record exit code and seconds
  local name=$1 limit=$2 start rc ms secs
  shift 2
  start=$(date +%s%N)
  echo "== $name: $*"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  secs="$((ms / 1000)).$(printf %03d $((ms % 1000)))"
  echo "   rc $rc, ${secs} s; $(tail -n 1 "$OUT/$name.log" | tr -d '"\\')"
  printf '{"part": "%s", "rc": %d, "seconds": %s, "last_line": "%s"}\n' "$name" "$rc" "$secs" \
    "$(tail -n 1 "$OUT/$name.log" | tr -d '"\\' | cut -c1-300)" >> "$OUT/parts.jsonl"
}

part env 30 "$PY" -c "
import json, platform, torch
cuda = torch.cuda.is_available()
print(json.dumps({'torch': torch.__version__, 'cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version(),
                  'device': torch.cuda.get_device_name() if cuda else platform.processor() or 'cpu',
                  'python': platform.python_version()}))"
tail -n 1 "$OUT/env.log" > "$OUT/env.json"
command -v nvidia-smi > /dev/null && nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1

# shellcheck disable=SC2086
part pytest_gpu 120 "$PY" -m pytest -m gpu -q -p no:cacheprovider $TESTS

part bench 150 "$PY" bench/step_profile.py --device "$DEV" --arch paper_faces small --precision fp32 bf16 \
  --batch "$BATCH" --steps "$STEPS" --warmup "$WARM" --profile "$OUT/traces" --out "$OUT/bench.json"

part bench_cudnn_benchmark 60 "$PY" bench/step_profile.py --device "$DEV" --arch paper_faces --precision bf16 \
  --cudnn-benchmark --batch "$BATCH" --steps "$STEPS" --warmup "$WARM" --out "$OUT/bench_cudnn_benchmark.json"

# A short paper_faces training through the stages' own commands (MLflow store under OUT).
DATA="$OUT/train/data/aligned/labeled"
rm -rf "$OUT/train"
part train_data 30 "$PY" bench/tiny_faces.py "$DATA" --identities "$IDS" --per-identity "$PER_ID"
cat > "$OUT/train/params.yaml" <<EOF
base: $ROOT/profiles/paper_faces.yaml
train: {batch_size: $TRAIN_BATCH, device: $DEV, checkpoint_every: $CKPT, log_every: $LOG}
train_gm: {steps: $GM_STEPS}
train_joint: {steps: $JOINT_STEPS}
EOF
STAGE=(env -u MLFLOW_TRACKING_URI DVC_ROOT="$OUT/train" "$PY" -m pipeline.cli)
part train_gm 90 "${STAGE[@]}" train-gm --params "$OUT/train/params.yaml" --data "$DATA" \
  --out "$OUT/train/models/train_gm" --metrics "$OUT/train_gm.json" --curves "$OUT/curves_gm.json"
part train_joint 120 "${STAGE[@]}" train-joint --params "$OUT/train/params.yaml" --data "$DATA" \
  --init "$OUT/train/models/train_gm/model.pt" --out "$OUT/train/models/train_joint" \
  --metrics "$OUT/train_joint.json" --curves "$OUT/curves_joint.json"
rm -rf "$OUT/train/models" "$OUT/train/mlruns"  # paper_faces checkpoints are >1 GB each; the figures are above

part bench_compiled 150 "$PY" bench/step_profile.py --device "$DEV" --arch "$COMPILE_ARCH" --precision bf16 \
  --compile --batch "$BATCH" --steps "$STEPS" --warmup "$WARM" --out "$OUT/bench_compiled.json"

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
parts = [json.loads(line) for line in (out / "parts.jsonl").read_text().splitlines() if line.strip()]
summary = {"env": json.loads((out / "env.json").read_text() or "{}") if (out / "env.json").exists() else None,
           "parts": parts, "failed": [p["part"] for p in parts if p["rc"] != 0]}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"{out}/summary.json: {len(parts)} parts, failed: {summary['failed'] or 'none'}")
EOF
