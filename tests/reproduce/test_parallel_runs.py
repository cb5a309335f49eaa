"""``hirescam reproduce --jobs N``: (model, seed) runs in their own processes, and what happens when one fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from hirescam_ext.reproduce.driver import RUN_FILE, _run_in_parallel, prepare_dataset, run_reproduction
from hirescam_ext.reproduce.profiles import get_profile
from hirescam_ext.utils.errors import InputError


def test_a_failing_run_is_raised_and_the_run_under_way_beside_it_keeps_its_record(tmp_path: Path) -> None:
    profile = get_profile("tiny", models=("axialnet",), sanity_scans=1, fit_scans=2)
    dataset = prepare_dataset(profile, tmp_path)
    messages: list[str] = []
    with pytest.raises(KeyError, match="no_such_model"):
        _run_in_parallel([("no_such_model", 0), ("axialnet", 0)], profile, dataset, tmp_path, None, 2, 1,
                         messages.append)
    assert (tmp_path / "runs" / "axialnet_seed0" / RUN_FILE).is_file()
    assert messages == ["[reproduce] 2 runs, 2 at a time, 1 thread(s) each"]


def test_fewer_than_one_run_at_a_time_is_refused_before_any_data_is_made(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="parallel runs must be >= 1"):
        run_reproduction(get_profile("tiny", parallel_runs=0), tmp_path / "out", tmp_path / "work")
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").glob("data_*"))
