#!/usr/bin/env bash
# The paper's claims on models that have learned, at a 4 x 4 attention grid, in one run on one lent GPU machine
# (docs/REPRODUCE.md, "Reference profile"; Draelos & Carin, HiResCAM, arXiv:2011.08891).
#
# Run from the repository root, carrying .whl/ (scripts/gpu_env.sh installs it).
# 1. scripts/train_reference.py twice at once on the one GPU: ResNet-18 AxialNet at 128 x 128 x 96 (demo profile,
#    dataset seed 1) with the classification loss, and the same with the mask loss; each keeps its data on the GPU
#    and saves its best checkpoint as it improves;
# 2. hirescam reproduce --profile reference_gpu on them (1200 new scans of dataset seed 2, no training);
# 3. under $OUT (at most 8 files): reference_gpu.tgz (the report, logs and training reports) and both checkpoints in
#    fp16, split into parts of 15 MB (reference_resnet18*.pt.part-*).
#
# Environment [defaults]: TRAIN_S training seconds per model [240], SCANS scans per training run [2400],
# WORK [/tmp/hirescam_reference_gpu]. DRY=1 runs the same steps on a CPU with tiny sizes (about 2 minutes).
set -uo pipefail

: "${OUT:=/tmp/gpu_reference_out}"
# shellcheck source=scripts/gpu_env.sh
source scripts/gpu_env.sh
TRAIN_S=${TRAIN_S:-240}
SCANS=${SCANS:-2400}
WORK=${WORK:-/tmp/hirescam_reference_gpu}
CKPTS=outputs/reference_gpu  # where the reference_gpu profile looks for the checkpoints
PROFILE=reference_gpu
TRAIN=(--seconds "$TRAIN_S" --scans "$SCANS" --seed 1 --out "$CKPTS")
REPRO=()
if [ "${DRY:-0}" = 1 ]; then
    TRAIN=(--dry-run --seconds 10 --out "$CKPTS")
    PROFILE=reference
    REPRO=(--scans 48 --device cpu)
fi
mkdir -p "$WORK/logs" "$CKPTS"

echo "[gpu_reference $(elapsed) s] training both reference models"
python3 scripts/train_reference.py "${TRAIN[@]}" >"$WORK/logs/train_class.log" 2>&1 &
p1=$!
# the mask-loss run writes its own report name: the two runs share the output folder
python3 scripts/train_reference.py "${TRAIN[@]}" --mask-loss --out "$CKPTS/mask" >"$WORK/logs/train_mask.log" 2>&1 &
p2=$!
wait $p1 || echo "[gpu_reference] classification-loss training ended with status $?"
wait $p2 || echo "[gpu_reference] mask-loss training ended with status $?"
tail -n 3 "$WORK"/logs/train_*.log
class_ckpt=$(ls "$CKPTS"/reference_*.pt 2>/dev/null | grep -v _mask | head -n 1)
mask_ckpt=$(ls "$CKPTS"/mask/reference_*_mask.pt 2>/dev/null | head -n 1)

echo "[gpu_reference $(elapsed) s] claims on $class_ckpt and $mask_ckpt"
if [ -n "$class_ckpt" ] && [ -n "$mask_ckpt" ]; then
    python3 -m hirescam_ext reproduce --profile "$PROFILE" "${REPRO[@]}" --checkpoint "axialnet=$class_ckpt" \
        --checkpoint "axialnet_mask=$mask_ckpt" --out "$WORK/results_$PROFILE" --work-dir "$WORK/repro" \
        >"$WORK/logs/reproduce.log" 2>&1 || echo "[gpu_reference] reproduce ended with status $?"
    tail -n 8 "$WORK/logs/reproduce.log"
else
    echo "[gpu_reference] a checkpoint is missing: no claims run"
fi

tar czf "$OUT/reference_gpu.tgz" "$WORK/logs" "$WORK/results_$PROFILE" "$CKPTS"/reference_training.json \
    "$CKPTS"/mask/reference_training.json 2>/dev/null
for ckpt in $class_ckpt $mask_ckpt; do
    split -b 15M "$ckpt" "$OUT/$(basename "$ckpt").part-"
done
echo "[gpu_reference $(elapsed) s] done; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
