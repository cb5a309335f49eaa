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
# 4. everything a person needs comes back under $OUT: logs, results/gpu as a tarball, the reference checkpoint.
#
# Environment (defaults in brackets): MODELS [axialnet axialnet_mask plain3d], SEEDS [0], EPOCHS [profile's],
# SCANS [profile's], REF_EPOCHS [30], DEVICE [cuda], BUDGET seconds for step 2 [400], WORK [/tmp/hirescam_gpu],
# WORKERS data-loader workers per job [4]. DRY=1 runs the same steps on a CPU with tiny sizes.
set -uo pipefail

: "${OUT:=/tmp/gpu_reproduce_out}"
mkdir -p "$OUT"
MODELS=${MODELS:-"axialnet axialnet_mask plain3d"}
SEEDS=${SEEDS:-0}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-400}
WORK=${WORK:-/tmp/hirescam_gpu}
WORKERS=${WORKERS:-4}
REF_EPOCHS=${REF_EPOCHS:-30}
EXTRA=()
[ -n "${EPOCHS:-}" ] && EXTRA+=(--epochs "$EPOCHS")
[ -n "${SCANS:-}" ] && EXTRA+=(--scans "$SCANS")
if [ "${DRY:-0}" = 1 ]; then
    DEVICE=cpu
    EXTRA=(--epochs 1 --scans 40 --synth-workers 2)
    REF_EPOCHS=1
    WORKERS=0
fi
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1

if [ -d .whl ] && ! python3 -c "import monai, ignite, nibabel, fire" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
t0=$(date +%s)
elapsed() { echo $(($(date +%s) - t0)); }
nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not available"
python3 -c "import sys, torch, monai; print('python', sys.version.split()[0], '| torch', torch.__version__,
'| cuda', torch.version.cuda, torch.cuda.is_available(), '| monai', monai.__version__)"

repro=(python3 -m hirescam_ext reproduce --profile gpu --device "$DEVICE" --num-workers "$WORKERS" --seeds $SEEDS
       --work-dir "$WORK" "${EXTRA[@]}")
echo "[gpu_reproduce $(elapsed) s] generating the benchmark"
data=$("${repro[@]}" --prepare-only | sed -n 's/^dataset: //p')
[ -d "$data" ] || { echo "dataset generation failed"; exit 1; }
echo "[gpu_reproduce $(elapsed) s] dataset $data ($(ls "$data/images" | wc -l) scans)"

ref=$WORK/reference
bundle=(python3 -m monai.bundle run --meta_file configs/metadata.json --logging_file configs/logging.conf
        --bundle_root "$ref" --dataset_dir "$data" --device "\$torch.device('$DEVICE')" --trunk small
        --spatial_size "[128,128,96]" --region_mode area --region_area_threshold 0.1 --optimizer_name adam
        --batch_size 8 --lr_schedule warmup_cosine --warmup_epochs 1 --num_workers "$WORKERS" --cache disk
        --cache_dir "$ref/cache")
(
    echo "$ ${bundle[*]} --config_file configs/train.json --train#trainer#max_epochs $REF_EPOCHS"
    timeout "$BUDGET" "${bundle[@]}" --config_file configs/train.json --train#trainer#max_epochs "$REF_EPOCHS" \
        && "${bundle[@]}" --config_file "['configs/train.json','configs/evaluate.json']"
) >"$OUT/reference.log" 2>&1 &
pids=($!)
for m in $MODELS; do
    timeout "$BUDGET" "${repro[@]}" --models "$m" --out "$WORK/out_$m" >"$OUT/run_$m.log" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || echo "[gpu_reproduce] job $p ended with status $?"; done
echo "[gpu_reproduce $(elapsed) s] training jobs done"

"${repro[@]}" --models $MODELS --out results/gpu >"$OUT/report.log" 2>&1 || echo "report step failed (see report.log)"
tail -n 20 "$OUT/report.log"
tar czf "$OUT/results_gpu.tgz" results/gpu "$WORK"/runs/*/run.json "$WORK"/runs/*/outputs/evaluation/*.md \
    "$ref"/outputs/evaluation 2>/dev/null
if [ -f "$ref/models/best.pt" ]; then
    cp "$ref/models/best.pt" "$OUT/reference_best.pt"
fi
tail -n 5 "$OUT"/*.log
echo "[gpu_reproduce $(elapsed) s] done; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
