"""``hirescam reproduce --jobs N``: (model, seed) runs in their own processes, and what happens when one fails."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
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


_PARENT = """
import concurrent.futures as cf, multiprocessing as mp, os, sys, time
from hirescam_ext.reproduce.driver import _init_run_process
if __name__ == "__main__":
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_init_run_process,
                                initargs=(1, 0)) as pool:
        print(pool.submit(os.getpid).result(), flush=True)
        time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_run_process_ends_when_its_driver_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(_PARENT, encoding="utf-8")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        os.kill(worker, 0)  # alive
        parent.send_signal(signal.SIGTERM)  # `kill <pid>`: the driver alone, not its process group
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.kill(worker, signal.SIGKILL)
            pytest.fail("the run process outlived its killed driver")
    finally:
        parent.kill()
