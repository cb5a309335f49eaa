"""`make demo`: the main job end to end on the embedded synthetic default, as a user would run it.

1. generate the synthetic chest-CT benchmark (demo profile) on first use;
2. train AxialNet with the HiResCAM mask loss (configs/train.json); on a CPU the demo uses AxialNet's small trunk
   and Adam so that it trains in minutes (--paper-model: the paper's ResNet-18 trunk and SGD, the configs' defaults).
   A few minutes of training on 110 scans teach a model little: this step shows the training, not a useful model;
3. evaluate that model: thresholds on validation, Tables 1/2 on test and test_shifted (configs/evaluate.json);
4. evaluate the shipped reference model (bundle/models/reference.pt, trained on 3,300 scans; its network and
   preprocessing come from the settings it carries, so the demo's scans are resampled to its grid) the same way;
5. inference with the reference model on a few test scans that hold a finding it learned (test AUROC >= 0.8 in
   bundle/models/reference.json): probabilities, and HiResCAM NIfTI maps and PNG overlays of those findings
   (configs/inference.json);
6. the same with its mask-loss twin (bundle/models/reference_mask.pt: same data and recipe, trained with the
   HiResCAM mask loss, which penalizes attention outside the organs where each finding can be: the paper's point),
   to compare side by side with step 5's.

Each step is one `python -m monai.bundle run` command, printed before it runs so it can be repeated by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "bundle" / "models" / "reference.pt"
REFERENCE_MASK = ROOT / "bundle" / "models" / "reference_mask.pt"
REFERENCE_EVAL = ROOT / "outputs" / "evaluation_reference"
REFERENCE_REPORT = ROOT / "bundle" / "models" / "reference.json"


def learned_labels(min_auroc: float = 0.8) -> list[str]:
    """The findings the reference model ranks well on its own test split (its training report)."""
    per_label = json.loads(REFERENCE_REPORT.read_text())["auroc"]["test"]["per_label"]
    return sorted(k for k, v in per_label.items() if v >= min_auroc)


def bundle(configs: list[str], *overrides: str) -> list[str]:
    files = [f"configs/{c}" for c in configs]
    config_arg = files[0] if len(files) == 1 else "[" + ",".join(repr(f) for f in files) + "]"
    return [sys.executable, "-m", "monai.bundle", "run", "--config_file", config_arg,
            "--meta_file", "configs/metadata.json", "--logging_file", "configs/logging.conf", *overrides]  # fmt: skip


def step(title: str, cmd: list[str]) -> float:
    print(f"\n=== {title}\n$ {shlex.join(cmd)}", flush=True)
    start = time.time()
    proc = subprocess.run(cmd, cwd=ROOT)
    if proc.returncode != 0:
        print(f"\nmake demo: step '{title}' failed with exit status {proc.returncode} (its output is above)")
        sys.exit(proc.returncode)
    return time.time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=12, help="training epochs (default 12)")
    parser.add_argument(
        "--paper-model",
        action="store_true",
        help="train the paper's ResNet-18 AxialNet with SGD (slow on a CPU) instead of the small trunk with Adam",
    )
    parser.add_argument("--profile", default="demo", help="synthetic profile (tiny for a one-minute smoke run)")
    parser.add_argument("--inference-scans", type=int, default=4, help="test scans to run inference on")
    args = parser.parse_args()

    timings = {}
    from hirescam_ext.synthetic.generator import GENERATOR_VERSION

    # one folder per generator version: a newer generator never meets data an older one wrote
    data = ROOT / "data" / f"synthetic_{args.profile}_v{GENERATOR_VERSION}"
    shape = {"tiny": "[64,64,48]", "small": "[96,96,72]", "demo": "[128,128,96]"}.get(args.profile, "[128,128,96]")
    common = ["--dataset_dir", str(data), "--synthetic_profile", args.profile, "--spatial_size", shape]
    # the demo's 128 x 128 input gives a 4 x 4 attention grid, where the paper's nearest sampling of the organ map
    # allows only a third of the lesion cells; area mode (a cell is allowed at 10 % organ) allows three quarters
    # (scripts/eval_allowed_regions.py, docs/ALLOWED_REGIONS.md)
    common += ["--region_mode", "area", "--region_area_threshold", "0.1"]
    model = [] if args.paper_model else ["--trunk", "small"]
    common += model
    train_only = [] if args.paper_model else ["--optimizer_name", "adam"]
    timings["synthetic data"] = step(
        f"1/6 synthetic chest-CT benchmark ({args.profile} profile) -> {data}",
        [sys.executable, "-m", "hirescam_ext", "synth", "--profile", args.profile, "--out", str(data)],
    )
    timings["train"] = step(
        f"2/6 train AxialNet with the mask loss ({args.epochs} epochs)",
        bundle(["train.json"], *common, *train_only, "--train#trainer#max_epochs", str(args.epochs)),
    )
    timings["evaluate"] = step("3/6 evaluate it (AUROC, OrganIoU with HiResCAM and Grad-CAM)",
                               bundle(["train.json", "evaluate.json"], *common))
    # the reference model: everything about its network and input comes from its checkpoint's model settings
    reference = ["--ckpt_path", str(REFERENCE)]
    data_only = ["--dataset_dir", str(data), "--synthetic_profile", args.profile,
                 "--region_mode", "area", "--region_area_threshold", "0.1"]  # fmt: skip
    timings["evaluate reference"] = step(
        "4/6 evaluate the shipped reference model on the same scans",
        bundle(["train.json", "evaluate.json"], *data_only, *reference, "--eval_dir", str(REFERENCE_EVAL)),
    )
    from hirescam_ext.labels import LABEL_NAMES

    learned = learned_labels()
    test = json.loads((data / "datalist.json").read_text())["test"]
    with_learned = [it for it in test if any(it["label"][LABEL_NAMES.index(n)] for n in learned)]
    test_items = (with_learned or test)[: args.inference_scans]
    inputs = ROOT / "outputs" / "demo_inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    chosen = {Path(item["image"]).name for item in test_items}
    for old in inputs.iterdir():  # links an earlier demo chose (another selection rule or scan count)
        if old.is_symlink() and old.name not in chosen:
            old.unlink()
    for item in test_items:
        link = inputs / Path(item["image"]).name
        if not link.exists():
            os.symlink(data / item["image"], link)
    # network and preprocessing (trunk, size, spacing, HU window) come from the checkpoint's saved settings
    inference_args = ["--input_dir", str(inputs), "--report_labels", json.dumps(learned)]
    timings["inference"] = step(f"5/6 inference with the reference model on {len(test_items)} test scans (maps of "
                                f"{', '.join(learned)})",
                                bundle(["inference.json"], *inference_args, *reference))
    mask_out = ROOT / "outputs" / "inference_mask_loss"
    timings["inference mask loss"] = step(
        "6/6 the same with the reference's mask-loss twin (trained to keep its maps inside the allowed organs)",
        bundle(["inference.json"], *inference_args, "--ckpt_path", str(REFERENCE_MASK), "--output_dir", str(mask_out)),
    )

    out = ROOT / "outputs"
    print("\n=== done in " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    print(f"tables:    {out / 'evaluation' / 'REPORT.md'}  (the demo's own short run: table1.md, table2.md, ...)")
    print(f"           {REFERENCE_EVAL / 'REPORT.md'}  (the shipped reference model)")
    print(f"pictures:  {out / 'inference'}/<scan>/overlay_<label>.png and slice_scores.png (reference model)")
    print(f"           {mask_out}/<scan>/overlay_<label>.png (its mask-loss twin: compare the two)")
    print(f"maps:      {out / 'inference'}/<scan>/hirescam_<label>.nii.gz (open over the CT in 3D Slicer / ITK-SNAP)")
    print(f"models:    {ROOT / 'models' / 'best.pt'} (short run; TensorBoard: {out / 'tensorboard'}), {REFERENCE}")
    print("\nthe demo's short run:\n" + (out / "evaluation" / "table1.md").read_text())
    print("\nthe shipped reference model:\n" + (REFERENCE_EVAL / "table1.md").read_text())
    results = json.loads((REFERENCE_EVAL / "results.json").read_text())["results"]
    for split in ("test", "test_shifted"):
        per_label = results.get(split, {}).get("auroc", {}).get("per_label", {})
        found = ", ".join(f"{n} {100 * per_label[n]:.0f}" for n in learned if per_label.get(n) is not None)
        print(f"reference model, AUROC of the findings it learned on {split}: {found or 'no positive scans'}")
    print(visible_summary(results))
    return 0


def visible_summary(results: dict) -> str:
    """The reference model's mean AUROC over the findings visible at the grid it was trained on (the learnability
    audit of its training data's profile and rendering), per split of an evaluation's ``results``."""
    from hirescam_ext.engines.model_settings import read_model_settings
    from hirescam_ext.synthetic.visibility import mean_over_visible, visibility_key, visible_findings

    data = (read_model_settings(REFERENCE) or {}).get("data") or {}
    if not data.get("profile"):
        return "reference model: its checkpoint names no training profile, so no visible-findings mean"
    visible = visible_findings(data["profile"], shape=data.get("shape"), render_profile=data.get("render_profile"))
    key = visibility_key(data["profile"], data.get("render_profile"))
    if not visible:
        return f"reference model: no learnability audit of {key} for this generator, so no visible-findings mean"
    means = []
    for split in ("validation", "test", "test_shifted"):
        mean = mean_over_visible(results.get(split, {}).get("auroc", {}).get("per_label", {}), visible)
        means.append(f"{split} {'n/a' if mean is None else f'{100 * mean:.1f}'}")
    return (f"reference model, mean AUROC over the {len(visible)} findings visible at its grid (learnability audit "
            f"{key}): {', '.join(means)}")


if __name__ == "__main__":
    sys.exit(main())
