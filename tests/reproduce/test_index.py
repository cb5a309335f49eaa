"""Specification of ``hirescam reproduce --index``: every finished reproduction's claims in one table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hirescam_ext.reproduce.driver import main
from hirescam_ext.reproduce.index import CLAIM_ORDER, collect_results, index_row, render_index, write_index
from hirescam_ext.utils.errors import InputError

REPO = Path(__file__).resolve().parents[2]


def _stats(*values: float) -> dict:
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "n": len(values), "values": list(values)}


def _results(folder: Path, kernel: int | None = 3, pointing: str = "did not hold", epochs: int = 56,
             trained_at: dict[str, float] | None = None, dataset: dict | None = None,
             elsewhere: dict[str, dict] | None = None) -> Path:
    """A minimal results.json as ``hirescam reproduce`` writes it (the fields the index reads); ``trained_at``:
    model -> confounder strength of the data its checkpoint was trained on elsewhere; ``dataset``: the parameters
    of the evaluated data's ``meta.json``; ``elsewhere``: model -> its seed 0's ``trained_elsewhere`` record, given
    with ``--checkpoint``."""
    profile = {"name": "quick", "max_epochs": epochs, "n_scans": 4000, "spatial_size": [64, 64, 48], "seeds": [0, 1],
               "models": ["axialnet", "axialnet_mask"], "checkpoints": {}}
    if kernel is not None:
        profile["custom_conv_kernel"] = kernel
    claims = [
        {"id": "hirescam_ge_gradcam", "status": "held", "hirescam": _stats(0.30, 0.32), "gradcam": _stats(0.2, 0.2)},
        {"id": "mask_loss_organiou", "status": "held", "relative_change": 0.72,
         "auroc_difference": _stats(-0.0001)},
        {"id": "confounder_drop_halved", "status": "did not hold", "baseline_drop": _stats(0.774),
         "mask_drop": _stats(0.772)},
        {"id": "randomization_sanity", "status": "held", "final_spearman": {"hirescam": _stats(-0.015)}},
        {"id": "pointing_game_3x_chance", "status": pointing, "ratio": 2.8895},
    ]
    summary = {"axialnet": {"auroc_visible_test": _stats(0.80, 0.83), "auroc_test": _stats(0.7, 0.7)},
               "axialnet_mask": {"auroc_test": _stats(0.75, 0.77)}}
    header = {"command": "hirescam reproduce --profile quick --seeds 0 1", "finished": "2026-12-07T00:00:00Z"}
    if dataset is not None:
        header["dataset_parameters"] = dataset
    folder.mkdir(parents=True)
    path = folder / "results.json"
    runs = {model: {"0": {"trained_elsewhere": {"checkpoint": f"/x/{model}.pt", "data": {"confounder_strength": s}}}}
            for model, s in (trained_at or {}).items()}
    for model, record in (elsewhere or {}).items():
        runs[model] = {"0": {"trained_elsewhere": record}}
        profile["checkpoints"][model] = record["checkpoint"]
    payload = {"header": header, "profile": profile, "claims": claims, "summary": summary, "runs": runs}
    path.write_text(json.dumps(payload))
    return path


def test_a_row_gives_each_claims_status_and_headline_number(tmp_path: Path) -> None:
    row = index_row(_results(tmp_path / "quick_seeds01"))
    assert row["folder"] == "quick_seeds01"
    assert row["claims"]["hirescam_ge_gradcam"] == ("held", "31.0 vs 20.0")
    assert row["claims"]["mask_loss_organiou"] == ("held", "+72 %, AUROC +0.0")  # never "-0.0"
    assert row["claims"]["confounder_drop_halved"] == ("did not hold", "drop 77.4 -> 77.2")
    assert row["claims"]["randomization_sanity"] == ("held", "rho -0.015")
    assert row["claims"]["pointing_game_3x_chance"] == ("did not hold", "2.89x")


def test_the_auroc_is_over_the_visible_findings_when_the_run_has_them(tmp_path: Path) -> None:
    row = index_row(_results(tmp_path / "r"))
    assert row["auroc"] == "81.5 ± 2.1"  # auroc_visible_test, not auroc_test (70.0)
    assert row["auroc_mask"] == "76.0 ± 1.4"  # no visible mean for the twin: the mean over all findings


def test_a_row_names_the_profile_epochs_input_size_and_scans(tmp_path: Path) -> None:
    what = index_row(_results(tmp_path / "r", epochs=36))["what"]
    assert what == "`quick`, 36 epochs, 64 x 64 x 48 input, 4000 scans"


def test_only_a_kernel_other_than_the_papers_is_named(tmp_path: Path) -> None:
    assert "custom convs" not in index_row(_results(tmp_path / "k3"))["what"]
    assert "custom convs" not in index_row(_results(tmp_path / "old", kernel=None))["what"]  # before the field
    assert "1 x 1 custom convs" in index_row(_results(tmp_path / "k1", kernel=1))["what"]


def test_checkpoints_trained_at_another_confounder_strength_are_named(tmp_path: Path) -> None:
    weak = index_row(_results(tmp_path / "weak", trained_at={"axialnet": 0.4, "axialnet_mask": 0.4}))["what"]
    assert "trained at confounder strength 0.4," in weak
    mixed = index_row(_results(tmp_path / "mixed", trained_at={"axialnet": 0.4, "axialnet_mask": 0.8}))["what"]
    assert "trained at confounder strength 0.4 / 0.8" in mixed
    usual = index_row(_results(tmp_path / "usual", trained_at={"axialnet": 0.8, "axialnet_mask": 0.8}))["what"]
    assert "confounder strength" not in usual


def test_checkpoints_trained_elsewhere_are_named_with_how_long_they_trained(tmp_path: Path) -> None:
    def given(planned: int | None, saved: int | None) -> dict:
        return {"checkpoint": "/x.pt", "training": {"epochs": planned} if planned else None, "saved_at_epoch": saved}

    both = {"axialnet": given(32, 31), "axialnet_mask": given(32, 32)}
    recorded = index_row(_results(tmp_path / "a", elsewhere=both))
    assert recorded["what"].startswith("`quick`, checkpoints trained elsewhere for 32 epochs,")
    older = index_row(_results(tmp_path / "b", elsewhere={"axialnet": given(None, 15), "axialnet_mask": given(16, 16)}))
    assert "checkpoints trained elsewhere (saved at epochs 15-16)," in older["what"]  # one records no recipe
    oldest = index_row(_results(tmp_path / "c", elsewhere={"axialnet": given(None, None)}))
    assert "checkpoints trained elsewhere," in oldest["what"]  # records written before either field


def test_data_rendered_otherwise_than_the_profiles_is_named(tmp_path: Path) -> None:
    given = {"confounder_strength": 0.8, "plaque_scale": 3.0, "n_scans": 2200}
    plaques = index_row(_results(tmp_path / "p", dataset=given))["what"]
    assert "calcified plaques x 3" in plaques and "evaluated at" not in plaques
    assert "2200 scans" in plaques  # the folder's, not the profile's 4000
    weak = index_row(_results(tmp_path / "w", dataset={"confounder_strength": 0.4}))["what"]
    assert "evaluated at confounder strength 0.4" in weak and "plaques" not in weak
    usual = index_row(_results(tmp_path / "u", dataset={"confounder_strength": 0.8}))["what"]
    assert usual == index_row(_results(tmp_path / "old"))["what"]  # as before the header recorded the data


def test_the_table_has_one_row_per_folder_in_name_order_and_counts_the_held_claims(tmp_path: Path) -> None:
    _results(tmp_path / "b_run", pointing="held")
    _results(tmp_path / "a_run")
    rows, skipped = collect_results(tmp_path)
    assert [r["folder"] for r in rows] == ["a_run", "b_run"] and not skipped
    text = render_index(rows)
    table = [line for line in text.splitlines() if line.startswith("| [")]
    assert [line.split("]")[0] for line in table] == ["| [a_run", "| [b_run"]
    assert all(line.count(" | ") == 4 + len(CLAIM_ORDER) for line in table)
    assert "`a_run` (3 of 5 claims held" in text and "`b_run` (4 of 5 claims held" in text
    assert "hirescam reproduce --profile quick --seeds 0 1" in text


def test_a_damaged_results_json_is_listed_and_the_others_indexed(tmp_path: Path) -> None:
    _results(tmp_path / "good")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{not json")
    target, rows = write_index(tmp_path)
    assert target == tmp_path / "README.md" and [r["folder"] for r in rows] == ["good"]
    text = target.read_text()
    assert "## Left out" in text and "broken/results.json" in text and "not a reproduction's results.json" in text


def test_a_folder_without_results_is_an_input_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no reproduction results to index"):
        write_index(tmp_path)
    with pytest.raises(InputError, match="not a folder"):
        write_index(tmp_path / "missing")


def test_the_command_writes_the_index_and_nothing_else(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _results(tmp_path / "run")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["--index", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(before + ["README.md"])
    assert "index of 1 reproduction(s)" in capsys.readouterr().out
    assert main(["--index", str(tmp_path / "missing")]) == 2


def test_the_committed_index_is_what_the_command_writes_from_the_committed_results(tmp_path: Path) -> None:
    """results/README.md must not drift from the reports it indexes: rerun the command after adding one."""
    committed = REPO / "results" / "README.md"
    if not committed.is_file():
        pytest.skip("no committed results/README.md in this checkout")
    target, _ = write_index(REPO / "results", tmp_path / "README.md")
    assert target.read_text(encoding="utf-8") == committed.read_text(encoding="utf-8")
