"""The CAM benchmark script runs end to end in quick mode and reports every ratio as JSON."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "benchmark_cam.py"


def test_quick_benchmark_prints_json_with_all_ratios(capsys):
    main = runpy.run_path(str(SCRIPT))["main"]
    assert main(["--quick"]) == 0
    report = json.loads(capsys.readouterr().out)
    axial, generic = report["axialnet_closed_form"], report["generic_3d"]
    assert axial["map_shape"][:2] == [1, 80]
    for value in (
        axial["hirescam_overhead_ratio"],
        axial["gradcam_overhead_ratio"],
        generic["hirescam_raw_overhead_ratio"],
        generic["hirescam_full_overhead_ratio"],
        generic["naive_over_forward_ratio"],
    ):
        assert math.isfinite(value) and value > 0
    assert generic["naive_all_classes_extrapolated"] is True
