#!/usr/bin/env bash
# GPU benchmark of AxialNet at the paper's size (Draelos & Carin, HiResCAM, arXiv:2011.08891); see
# scripts/gpu_benchmark.py and docs/PERFORMANCE.md.
#
# Run from the repository root on a lent GPU machine that has Python 3.12 and torch but not MONAI. The pure-Python
# wheels carried in .whl/ (monai; prepared with `pip download`, see docs/PERFORMANCE.md) are installed into
# /tmp/site; numpy is installed from .whl/optional/ only when the machine lacks it. Extra arguments go to
# gpu_benchmark.py (for example --dry-run, --no-fp32). The JSON is printed and written to $OUT/gpu_benchmark.json
# when $OUT is set.
set -euo pipefail

python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
if ! python3 -c "import numpy" 2>/dev/null; then
    echo "numpy missing: installing .whl/optional/numpy-*.whl"
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/optional/numpy-*.whl
fi

nvidia-smi -L || echo "nvidia-smi: not available"
python3 -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '| cuda', torch.version.cuda, '| available', torch.cuda.is_available())"
python3 -c "import monai, numpy; print('monai', monai.__version__, '| numpy', numpy.__version__)"

python3 scripts/gpu_benchmark.py "$@"
