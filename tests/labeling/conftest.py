from __future__ import annotations

from pathlib import Path

import pytest

from hirescam_ext.labeling import ReportLabeler

DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"


@pytest.fixture(scope="session")
def labeler() -> ReportLabeler:
    return ReportLabeler()


@pytest.fixture(scope="session")
def datasets() -> Path:
    return DATASETS.resolve()
