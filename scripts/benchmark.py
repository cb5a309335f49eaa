"""Thin wrapper of ``hirescam bench`` (:func:`hirescam_ext.benchmark.main`): AxialNet training-step benchmark, JSON.

Usage::

    python scripts/benchmark.py                         # CPU, demo size [1, 1, 128, 128, 96], mask loss on vs off
    python scripts/benchmark.py --size tiny --steps 1   # seconds
    python scripts/benchmark.py --device cuda --size paper --amp bf16
    python scripts/benchmark.py --suite all --quick     # plus the other scripts/benchmark_*.py
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file from a source checkout: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hirescam_ext.benchmark import main  # noqa: E402

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
