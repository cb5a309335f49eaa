from __future__ import annotations

from pathlib import Path

import pytest

from hirescam_ext.labeling import ReportLabeler


@pytest.fixture(scope="session")
def labeler() -> ReportLabeler:
    return ReportLabeler()


@pytest.fixture(scope="session")
def datasets(shared_datasets_dir: Path) -> Path:
    return shared_datasets_dir
