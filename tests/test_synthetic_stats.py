"""scripts/synthetic_stats.py: the confounder's statistics of a dataset folder, and the lesion reading it takes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hirescam_ext.labels import LABEL_NAMES
from hirescam_ext.synthetic.findings import CONFOUNDED_LABEL


def _findings(folder: Path, test_splits: bool = True) -> None:
    """200 scans a split; the label follows the fat everywhere but in test_shifted, where it runs against it
    (``test_splits`` False: training and validation only)."""
    rng = np.random.default_rng(0)
    m = LABEL_NAMES.index(CONFOUNDED_LABEL)
    findings = {}
    for split in ("training", "validation", "test", "test_shifted")[: 4 if test_splits else 2]:
        sign = -1.0 if split == "test_shifted" else 1.0
        for i in range(200):
            y = float(rng.random() < 0.4)
            label = [0] * len(LABEL_NAMES)
            label[m] = int(y)
            fat = 20.0 + 10.0 * (sign * 1.5 * y + rng.standard_normal())
            findings[f"{split}{i}"] = {"split": split, "fat_thickness_mm": fat, "label": label}
    (folder / "findings.json").write_text(json.dumps(findings))


def test_synthetic_stats_prints_each_split_and_the_lesion_to_fat_ratio_that_halves_the_drop(
    load_script, tmp_path: Path, capsys
) -> None:
    _findings(tmp_path)
    load_script("synthetic_stats").main([str(tmp_path), "--drop", "60"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:4]] == ["training", "validation", "test", "test_shifted"]
    assert float(lines[3].split()[-1]) < 20.0  # the fat alone ranks the shifted split upside down
    assert "halves a drop of 60.0 points (to 30.0) from l / f = " in lines[4]
    assert 0.0 < float(lines[4].rsplit("= ", 1)[1]) < 10.0


def test_a_folder_without_test_splits_gets_its_training_statistics_and_no_ratio(
    load_script, tmp_path: Path, capsys
) -> None:
    _findings(tmp_path, test_splits=False)
    load_script("synthetic_stats").main([str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    assert "AUROC of the fat alone" in lines[0] and "AUROC of the fat alone" in lines[1]
    assert lines[2].split()[:3] == ["test", "scans", "0"] and lines[2].endswith(": none")
    assert lines[4].startswith("no lesion-to-fat ratio")
