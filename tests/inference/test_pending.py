"""Re-runs of inference: finished scans are skipped only when they were made with the same checkpoint."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hirescam_ext.inference import DONE_MARKER, pending_inputs


def _finished(out: Path, scan: str, sha: str | None) -> None:
    folder = out / scan
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"source": scan, "checkpoint_sha256": sha}))
    (folder / DONE_MARKER).write_text("{}")


def test_a_scan_finished_with_the_same_checkpoint_is_skipped(tmp_path: Path) -> None:
    _finished(tmp_path, "a", "1" * 64)
    assert pending_inputs(["in/a.nii.gz"], tmp_path, checkpoint_sha256="1" * 64) == []


def test_a_scan_finished_with_another_checkpoint_is_redone_and_logged(tmp_path: Path, caplog) -> None:
    _finished(tmp_path, "a", "1" * 64)
    _finished(tmp_path, "b", None)  # written before the hash was recorded: unknown model, redone too
    with caplog.at_level(logging.WARNING):
        pending = pending_inputs(["in/a.nii.gz", "in/b.nii.gz"], tmp_path, checkpoint_sha256="2" * 64)
    assert [item["scan"] for item in pending] == ["a", "b"]
    assert "2 finished scan(s)" in caplog.text and "another checkpoint" in caplog.text
