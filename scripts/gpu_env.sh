# Sourced by the scripts/gpu_*.sh runs on a lent GPU machine (Python 3.12 and torch only): installs the pure-Python
# wheels carried in .whl/ (MONAI, Ignite, nibabel, fire; docs/PERFORMANCE.md) into /tmp/site when they are missing,
# puts the repository on PYTHONPATH, starts the clock (`elapsed`) and prints the versions.
: "${OUT:=/tmp/gpu_out}"
mkdir -p "$OUT"
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
