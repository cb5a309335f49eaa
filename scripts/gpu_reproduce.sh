#!/usr/bin/env bash
# The GPU profile of `hirescam reproduce` and the bundle's reference model, in one run on one lent GPU machine
# (docs/REPRODUCE.md, "GPU profile"; Draelos & Carin, HiResCAM, arXiv:2011.08891).
#
# Run from the repository root. The machine has Python 3.12 and torch but neither MONAI, Ignite, nibabel nor fire:
# their pure-Python wheels travel in .whl/ (see docs/PERFORMANCE.md) and are installed into /tmp/site.
#
# 1. generate the benchmark once (`hirescam reproduce --profile gpu --prepare-only`, one process per core);
# 2. in parallel on the one GPU: one `hirescam reproduce --profile gpu --models M` per model (train, evaluate,
#    analyses), and the reference model: configs/train.json then configs/evaluate.json through
#    `python -m monai.bundle run`, small trunk, the same data;
# 3. the report over all models (`--out results/gpu`, reusing the finished runs);
# 4. the issue-15 GPU benchmark (scripts/gpu_benchmark.py) in what time is left, when GPU_BENCH_S > 0;
# 5. what a person needs comes back under $OUT (at most 8 files): results_gpu.tgz (results/gpu, every log, the runs'
#    records and evaluation tables), reference_best.pt (the small-trunk reference model), the ResNet-18
#    AxialNet + mask loss checkpoint in fp16 split into parts of 15 MB (axialnet_mask_fp16.pt.part-*), the benchmark JSON.
#
# Environment (defaults in brackets): MODELS [axialnet axialnet_mask plain3d], SEEDS [0], EPOCHS [profile's],
# SCANS [profile's], REF_EPOCHS [30], DEVICE [cuda], BUDGET seconds for step 2 [400], TRAIN_S training seconds per
# run [BUDGET - 150: evaluation and analyses follow], WORK [/tmp/hirescam_gpu],
# WORKERS data-loader workers per job [4], GPU_BENCH_S seconds for the benchmark [0: skipped], DEADLINE seconds for
# the whole script [570]: the benchmark gets at most what is left of it. DRY=1 runs the same steps on a CPU with tiny
# sizes.
set -uo pipefail

: "${OUT:=/tmp/gpu_reproduce_out}"
MODELS=${MODELS:-"axialnet axialnet_mask plain3d"}
SEEDS=${SEEDS:-0}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-400}
WORK=${WORK:-/tmp/hirescam_gpu}
WORKERS=${WORKERS:-4}
REF_EPOCHS=${REF_EPOCHS:-30}
GPU_BENCH_S=${GPU_BENCH_S:-0}
DEADLINE=${DEADLINE:-570}
LOGS=$WORK/logs
mkdir -p "$LOGS"
EXTRA=()
BENCH_ARGS=()
[ -n "${EPOCHS:-}" ] && EXTRA+=(--epochs "$EPOCHS")
[ -n "${SCANS:-}" ] && EXTRA+=(--scans "$SCANS")
if [ "${DRY:-0}" = 1 ]; then
    DEVICE=cpu
    EXTRA=(--epochs 1 --scans 40 --synth-workers 2)
    REF_EPOCHS=1
    WORKERS=0
    BENCH_ARGS=(--dry-run)
fi
# shellcheck source=scripts/gpu_env.sh
source scripts/gpu_env.sh

repro=(python3 -m hirescam_ext reproduce --profile gpu --device "$DEVICE" --num-workers "$WORKERS" --seeds $SEEDS
       --work-dir "$WORK" "${EXTRA[@]}")
echo "[gpu_reproduce $(elapsed) s] generating the benchmark"
data=$("${repro[@]}" --prepare-only | sed -n 's/^dataset: //p')
[ -d "$data" ] || { echo "dataset generation failed"; exit 1; }
echo "[gpu_reproduce $(elapsed) s] dataset $data ($(ls "$data/images" | wc -l) scans)"
# what is left of DEADLINE after the report, export and archive (about 70 s) bounds the training jobs
left=$((DEADLINE - $(elapsed) - 70))
[ "$left" -lt "$BUDGET" ] && BUDGET=$left
TRAIN_S=${TRAIN_S:-$((BUDGET - 150))}
[ "$TRAIN_S" -lt 60 ] && TRAIN_S=60
echo "[gpu_reproduce $(elapsed) s] training jobs: $BUDGET s each at most, training $TRAIN_S s"

ref=$WORK/reference
bundle=(python3 -m monai.bundle run --meta_file configs/metadata.json --logging_file configs/logging.conf
        --bundle_root "$ref" --dataset_dir "$data" --device "\$torch.device('$DEVICE')" --trunk small
        --spatial_size "[128,128,96]" --region_mode area --region_area_threshold 0.1 --optimizer_name adam
        --batch_size 8 --lr_schedule warmup_cosine --warmup_epochs 1 --num_workers "$WORKERS" --cache disk
        --cache_dir "$ref/cache" --max_train_seconds "$TRAIN_S")
(
    echo "$ ${bundle[*]} --config_file configs/train.json --train#trainer#max_epochs $REF_EPOCHS"
    timeout "$BUDGET" "${bundle[@]}" --config_file configs/train.json --train#trainer#max_epochs "$REF_EPOCHS" \
        && timeout 120 "${bundle[@]}" --config_file "['configs/train.json','configs/evaluate.json']"
) >"$LOGS/reference.log" 2>&1 &
pids=($!)
for m in $MODELS; do
    timeout "$BUDGET" "${repro[@]}" --max-train-seconds "$TRAIN_S" --models "$m" --out "$WORK/out_$m" \
        >"$LOGS/run_$m.log" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || echo "[gpu_reproduce] job $p ended with status $?"; done
echo "[gpu_reproduce $(elapsed) s] training jobs done"

done_models=""
for m in $MODELS; do
    complete=1
    for s in $SEEDS; do [ -f "$WORK/runs/${m}_seed$s/run.json" ] || complete=0; done
    [ $complete = 1 ] && done_models="$done_models $m" || echo "[gpu_reproduce] $m did not finish: left out of the report"
done
if [ -n "$done_models" ]; then
    "${repro[@]}" --max-train-seconds "$TRAIN_S" --models $done_models --out results/gpu >"$LOGS/report.log" 2>&1 \
        || echo "report step failed (report.log)"
fi
echo "[gpu_reproduce $(elapsed) s] report written"
for f in "$LOGS"/*.log; do echo "== $f"; grep -v "^ " "$f" | grep -i "error\|done in\|Metrics\|held\|report:" | tail -n 6; done
[ -f "$ref/models/best.pt" ] && cp "$ref/models/best.pt" "$OUT/reference_best.pt"
mask_ckpt=$WORK/runs/axialnet_mask_seed$(echo $SEEDS | cut -d' ' -f1)/models/best.pt
if [ -f "$mask_ckpt" ]; then
    python3 - "$mask_ckpt" "$WORK/axialnet_mask_fp16.pt" <<'PY'
import sys, torch
ckpt = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
ckpt = {k: v for k, v in ckpt.items() if k in ("model", "model_settings", "epoch")}
ckpt["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
torch.save(ckpt, sys.argv[2])
PY
    split -b 15M "$WORK/axialnet_mask_fp16.pt" "$OUT/axialnet_mask_fp16.pt.part-"
fi
left=$((DEADLINE - $(elapsed) - 40))
[ "$left" -lt "$GPU_BENCH_S" ] && GPU_BENCH_S=$left
if [ "$GPU_BENCH_S" -gt 20 ]; then
    echo "[gpu_reproduce $(elapsed) s] benchmark (${GPU_BENCH_S} s)"
    timeout $((GPU_BENCH_S + 30)) python3 scripts/gpu_benchmark.py --budget-s "$GPU_BENCH_S" "${BENCH_ARGS[@]}" \
        >"$LOGS/gpu_benchmark.log" 2>&1 || echo "benchmark ended with status $?"
    tail -n 30 "$LOGS/gpu_benchmark.log"
fi
tar czf "$OUT/results_gpu.tgz" results/gpu "$LOGS" "$WORK"/runs/*/run.json "$WORK"/runs/*/outputs/evaluation/*.md \
    "$WORK"/runs/*/outputs/evaluation/*.csv "$ref"/outputs/evaluation 2>/dev/null
echo "[gpu_reproduce $(elapsed) s] done; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
