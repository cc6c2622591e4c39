#!/usr/bin/env bash
# From a folder of photos (one sub-folder per person) to a trained Lr-LiVAE model and its figures, offline:
#     bash scripts/real_photos.sh PHOTOS [UNLABELED_PHOTOS] [OUT]
# PHOTOS: <person>/<photo files>; UNLABELED_PHOTOS (optional): other people, for the semi-supervised
# fine-tuning (finetune_semi); OUT (default runs/real_photos): aligned sets, models and reports.
# Settings: profiles/real_photos.yaml (an overlay of params.yaml; copy and edit it, or set PARAMS=file).
# MLflow runs go to ./mlflow.db (mlflow ui --backend-store-uri sqlite:///mlflow.db).
set -euo pipefail
if [[ $# -lt 1 || ! -d "$1" ]]; then
  echo "usage: bash scripts/real_photos.sh PHOTOS [UNLABELED_PHOTOS] [OUT]   (PHOTOS: one folder per person)" >&2
  exit 2
fi
photos=$(realpath "$1"); unl=${2:-}; [[ -n "$unl" ]] && unl=$(realpath "$unl")
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${3:-runs/real_photos}
params=${PARAMS:-profiles/real_photos.yaml}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
P=(--params "$params")
mkdir -p "$out"
lrlivae align "${P[@]}" --labeled-root "$photos" --unlabeled-root "${unl:-}" --out-dir "$out/aligned" \
  --metrics "$out/reports/align.json"
lrlivae train-gm "${P[@]}" --data "$out/aligned/labeled" --out "$out/models/train_gm" --metrics "$out/reports/train_gm.json"
lrlivae train-joint "${P[@]}" --data "$out/aligned/labeled" --init "$out/models/train_gm/model.pt" \
  --out "$out/models/train_joint" --metrics "$out/reports/train_joint.json"
model="$out/models/train_joint/model.pt"
if [[ -n "$unl" ]]; then
  lrlivae finetune-semi "${P[@]}" --data "$out/aligned/unlabeled" --labeled "$out/aligned/labeled" --init "$model" \
    --out "$out/models/finetune_semi" --metrics "$out/reports/finetune_semi.json" --figures "$out/reports/figures/finetune_semi"
  model="$out/models/finetune_semi/model.pt"
fi
lrlivae train-evaluator "${P[@]}" --data "$out/aligned/labeled" --out "$out/models/train_evaluator" \
  --metrics "$out/reports/train_evaluator.json"
lrlivae evaluate "${P[@]}" --data "$out/aligned/labeled" --model "$model" --evaluator "$out/models/train_evaluator/evaluator.pt" \
  --metrics "$out/reports/evaluate.json" --figures "$out/reports/figures/evaluate" --report "$out/reports/evaluate.md"
echo "done: $out/reports/evaluate.md (figures in $out/reports/figures; rejected photos: $out/aligned/*/rejects.csv)"
