"""``scripts/eval_cell_supervision.py``: can a trunk learn a finding when it is told the truth lesion cells?"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "eval_cell_supervision.py"


def _module():
    spec = importlib.util.spec_from_file_location("eval_cell_supervision", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the generation workers pickle its functions by module name
    spec.loader.exec_module(module)
    return module


def test_lesion_cells_mark_every_cell_and_triplet_a_lesion_touches() -> None:
    mod = _module()
    lesions = np.zeros((32, 32, 12, 2), np.uint8)
    lesions[15:17, 3, 5:7, 0] = 1  # crosses the x cell border (15 | 16) and the triplet border (5 | 6)
    lesions[20, 20, 0, 1] = 1
    cells = mod.lesion_cells(lesions, ["lung_mass", "lung_nodule"], ("lung_nodule", "lung_mass"))
    assert cells.shape == (2, 4, 2, 2)  # [L, H, D1, D2]
    assert set(zip(*np.nonzero(cells[1]))) == {(1, 0, 0), (1, 1, 0), (2, 0, 0), (2, 1, 0)}
    assert set(zip(*np.nonzero(cells[0]))) == {(0, 1, 1)}


def test_lesion_cells_of_a_label_without_a_lesion_are_all_false() -> None:
    cells = _module().lesion_cells(np.ones((16, 16, 3, 1), np.uint8), ["lung_mass"], ("lung_groundglass",))
    assert not cells.any()


def test_lesion_cells_refuse_sizes_that_do_not_split_into_cells() -> None:
    with pytest.raises(ValueError, match="16-pixel cells"):
        _module().lesion_cells(np.zeros((20, 16, 3, 1), np.uint8), ["lung_mass"], ("lung_mass",))


@pytest.mark.parametrize("trunk", ["small16", "plain"])
def test_cell_model_gives_one_logit_per_label_and_attention_cell(trunk: str) -> None:
    net = _module().CellModel(trunk, n_labels=3).eval()
    assert net(torch.zeros(2, 1, 64, 64, 12)).shape == (2, 3, 4, 4, 4)  # [B, L, H, D1, D2]


def test_unknown_trunk_is_refused_before_any_data_is_generated(capsys) -> None:
    with pytest.raises(SystemExit):
        _module().main(["--trunks", "small16,resnet50", "--dry-run"])
    assert "resnet50" in capsys.readouterr().err


def test_dry_run_trains_both_trunks_and_writes_the_report(tmp_path: Path) -> None:
    assert _module().main(["--dry-run", "--workers", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "cell_supervision.json").read_text())
    assert set(report["trunks"]) == {"small16", "plain"}
    assert report["scans"]["training"] > 0 and report["scans"]["validation"] > 0
    first = report["trunks"]["plain"]["history"][0]
    assert set(first["cell_auroc"]) == set(report["labels"]) == set(first["max_cell_scan_auroc"])


def test_cell_pos_weight_is_the_cell_odds_clipped_and_one_when_off() -> None:
    mod = _module()
    cells = torch.zeros(2, 3, 2, 2, 1)  # [N, L, D1, D2, H]: 8 cells per label
    cells[0, 0, 0, 0, 0] = 1  # label 0: 1 positive, 7 negatives
    cells[:, 1] = 1  # label 1: all positive
    weight = mod.cell_pos_weight(cells, max_weight=5.0)
    assert weight.shape == (3, 1, 1, 1)
    assert weight.flatten().tolist() == [5.0, 1.0, 5.0]  # 7 clipped to 5; no negatives; never positive: clipped odds
    assert mod.cell_pos_weight(cells, max_weight=0.0).flatten().tolist() == [1.0, 1.0, 1.0]
