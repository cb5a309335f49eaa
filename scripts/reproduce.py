"""Reproduce the HiResCAM paper's experiments on the synthetic benchmark (thin wrapper of ``hirescam reproduce``).

Usage:
    python scripts/reproduce.py --profile tiny   # smoke test, about a minute on 2 CPU cores
    python scripts/reproduce.py --profile quick  # about an hour on 2 CPU cores: Table 2's pair, writes results/quick/
    python scripts/reproduce.py --profile quick_all  # about 70 minutes: every Table 1 model, too short to learn
    python scripts/reproduce.py --profile full --device cuda --pretrained resnet18.pth  # paper-sized, GPU

See docs/REPRODUCE.md.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from hirescam_ext.reproduce import main

    sys.exit(main(sys.argv[1:]))
