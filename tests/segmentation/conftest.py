"""Fixtures of the organ segmentation tests: a small analytic chest phantom, the shared datasets, the eval script."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _ellipsoid(shape, centre, radii) -> np.ndarray:
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0


def make_chest(shape=(80, 64, 50), seed=0, right_radii=(11, 15, 18), left_radii=(10, 14, 17), lungs=None):
    """Analytic RAS chest at 5 mm: body, spine, trachea, two lungs (right = larger axis 0) with vessels.

    Returns ``(hu, truth)``; truth uses the organ encoding (1 right lung, 3 left lung; no heart truth).
    ``lungs`` may give the (right, left) masks explicitly.
    """
    rng = np.random.default_rng(seed)
    nx, ny, nz = shape
    hu = np.full(shape, -1000.0, np.float32)
    body = _ellipse_2d(shape, (nx / 2, ny / 2), (nx * 0.43, ny * 0.38))
    hu[body] = 40.0
    if lungs is None:
        right = _ellipsoid(shape, (54, 32, 25), right_radii)
        left = _ellipsoid(shape, (26, 32, 25), left_radii)
    else:
        right, left = lungs
    hu[right | left] = -850.0
    # vessels inside the lungs (filled by the segmentation)
    for _ in range(12):
        x, y, z = (int(v) for v in np.argwhere(right | left)[rng.integers((right | left).sum())])
        hu[x, y, max(0, z - 3) : z + 3] = 40.0
    spine = _ellipse_2d(shape, (nx / 2, 13), (4.5, 4.5))
    hu[spine] = 700.0
    trachea = _ellipse_2d(shape, (nx / 2, 34), (2.2, 2.2))
    trachea[:, :, :38] = False
    hu[trachea] = -1000.0
    hu += rng.normal(0.0, 10.0, shape).astype(np.float32)
    truth = np.zeros(shape, np.uint8)
    truth[right] = 1
    truth[left] = 3
    return hu, truth


def _ellipse_2d(shape, centre, radii) -> np.ndarray:
    x, y = np.ogrid[0 : shape[0], 0 : shape[1]]
    m = ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 <= 1.0
    return np.broadcast_to(m[:, :, None], shape).copy()


@pytest.fixture
def chest():
    """Factory of analytic chest phantoms (see :func:`make_chest`)."""
    return make_chest


@pytest.fixture
def ellipsoid():
    return _ellipsoid


@pytest.fixture(scope="session")
def datasets(shared_datasets: Path) -> Path:
    return shared_datasets


@pytest.fixture(scope="session")
def eval_script():
    """The evaluation script as a module (its functions are the measurement used by these tests)."""
    path = REPO / "scripts" / "eval_segmentation.py"
    spec = importlib.util.spec_from_file_location("eval_segmentation", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module
