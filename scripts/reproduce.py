"""Reproduce the HiResCAM paper's experiments on the synthetic benchmark (thin wrapper of ``hirescam reproduce``).

Usage:
    python scripts/reproduce.py --profile tiny   # smoke test, about a minute on 2 CPU cores
    python scripts/reproduce.py --profile quick  # about 70 minutes on 2 CPU cores, writes results/quick/
    python scripts/reproduce.py --profile full --device cuda --pretrained resnet18.pth  # paper-sized, GPU

See docs/REPRODUCE.md.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from hirescam_ext.reproduce import main

    sys.exit(main(sys.argv[1:]))
