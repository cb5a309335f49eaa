"""Specification of ``hirescam bench`` (hirescam_ext.benchmark) and of scripts/gpu_benchmark.py's CPU dry run.

No timing assertions: the numbers only have to be well-formed.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from hirescam_ext.benchmark import main, run_script_benchmark

REPO = Path(__file__).resolve().parents[1]


def _load_gpu_script():
    spec = importlib.util.spec_from_file_location("_gpu_benchmark_under_test", REPO / "scripts" / "gpu_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_tiny_prints_one_json_document_with_finite_positive_throughput(capsys):
    assert main(["--steps", "1", "--warmup", "0", "--size", "tiny"]) == 0
    report = json.loads(capsys.readouterr().out)
    results = report["train"]["results"]
    assert set(results) == {"mask_loss_on", "mask_loss_off"}
    for name, res in results.items():
        assert math.isfinite(res["volumes_per_s"]) and res["volumes_per_s"] > 0, name
        assert res["peak_memory_bytes"] > 0, name
        assert res["loss_finite"], name
    assert report["train"]["input"] == [1, 1, 64, 64, 12]
    for key in ("device_name", "torch", "threads", "date", "command"):
        assert key in report, key


def test_missing_benchmark_script_is_recorded_as_not_available(tmp_path):
    result = run_script_benchmark("benchmark_does_not_exist", [], scripts_dir=tmp_path)
    assert result["status"] == "not available"
    assert "benchmark_does_not_exist.py" in result["reason"]


def test_gpu_benchmark_dry_run_runs_every_section_and_writes_out_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OUT", str(tmp_path))
    gpu = _load_gpu_script()
    assert gpu.main(["--dry-run"]) == 0
    printed = json.loads(capsys.readouterr().out)
    written = json.loads((tmp_path / "gpu_benchmark.json").read_text())
    assert written == printed
    for precision in ("bf16", "fp32"):
        for variant in ("mask_loss_on", "mask_loss_off"):
            res = written["train"][precision][variant]
            assert math.isfinite(res["volumes_per_s"]) and res["volumes_per_s"] > 0, (precision, variant)
        cam = written["cam"][precision]
        assert cam["map_shape"] == [1, 80, 4, 2, 2]
        assert cam["hirescam_normalized_overhead_ratio"] > 0 and cam["gradcam_normalized_overhead_ratio"] > 0
    # issue 15 sections
    for variant in ("b1_default", "b1_channels_last", "b2_channels_last"):
        assert written["bare_steps"][variant]["volumes_per_s"] > 0 and written["bare_steps"][variant]["loss_finite"]
    assert written["compiled_step"]["b1_channels_last_compiled"]["volumes_per_s"] > 0
    for precision in ("fp32", "bf16"):
        for variant in ("iter_maps", "call_fp16", "all_at_once_before"):
            assert written["cam_upsampled"][precision][variant]["over_forward"] > 0, (precision, variant)
    for layer in ("layer2", "layer3", "layer4"):
        assert {"replay", "vmap"} <= set(written["generic_layers"][layer]), layer


def test_gpu_benchmark_budget_skips_the_sections_it_cannot_start(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OUT", str(tmp_path))
    gpu = _load_gpu_script()
    assert gpu.main(["--dry-run", "--budget-s", "1", "--sections", "cam", "train"]) == 0
    written = json.loads((tmp_path / "gpu_benchmark.json").read_text())
    assert "spent" in written["cam"]["skipped"] and "spent" in written["train"]["skipped"]


@pytest.mark.parametrize("argv", [["--steps", "0"], ["--warmup", "-1"]])
def test_bench_rejects_non_positive_steps_and_negative_warmup(argv):
    with pytest.raises(SystemExit):
        main(argv)


def test_bench_pipeline_times_the_bundle_train_workflow_after_its_cache_epoch(capsys):
    """``hirescam bench --pipeline``: the train config runs on generated scans; epoch 1 (cache) is not timed."""
    assert main(["--pipeline", "--size", "tiny", "--pipeline-scans", "24", "--batch-size", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    pipe = report["pipeline"]
    assert report["suite"] == "pipeline" and pipe["input"] == [2, 1, 64, 64, 48] and pipe["cache"] == "disk"
    n_train = 13  # 55 % of 24 scans
    assert pipe["timed_volumes"] == n_train and pipe["timed_iterations"] == math.ceil(n_train / 2)
    assert pipe["volumes_per_s"] > 0 and 0 < pipe["data_wait_share"] < 1
    assert set(pipe["epoch_seconds"]) == {"1", "2"}


def test_bench_cache_reads_reports_every_cache_format_beside_the_disk_cache(capsys):
    """``hirescam bench --cache-reads``: each format is written and read back; int16 takes half of float32's bytes."""
    assert main(["--cache-reads", "--size", "tiny"]) == 0
    report = json.loads(capsys.readouterr().out)
    variants = report["cache_reads"]["variants"]
    assert report["suite"] == "cache_reads" and report["cache_reads"]["input"] == [1, 64, 64, 48]
    assert set(variants) == {"disk", "memmap_int16_float32", "memmap_uint8_float32", "memmap_int16_stored",
                             "memmap_uint8_stored"}  # fmt: skip
    voxels = 64 * 64 * 48
    assert variants["memmap_int16_stored"]["bytes_per_item"] < 2 * voxels + 20_000
    assert variants["memmap_uint8_stored"]["bytes_per_item"] < voxels + 20_000
    assert variants["disk"]["bytes_per_item"] > 4 * voxels
    assert variants["disk"]["speedup_vs_disk"] == 1.0 and all(v["item_s_median"] > 0 for v in variants.values())
