"""`make demo`: the main job end to end on the embedded synthetic default, as a user would run it.

1. generate the synthetic chest-CT benchmark (demo profile) on first use;
2. train AxialNet with the HiResCAM mask loss (configs/train.json): by default it fine-tunes the shipped mask-loss
   model (bundle/models/reference_mask.pt, ``--init_ckpt``) on the demo's 110 training scans, as a user would start
   on their own data, so the model it trains has learned. ``--from-scratch`` trains a new AxialNet instead (small
   trunk and Adam so that it trains in minutes; ``--paper-model``: the paper's ResNet-18 trunk and SGD, the configs'
   defaults); a few minutes on 110 scans teach a new model nothing, so that run shows the training, not a model;
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


def _cli_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value), separators=(",", ":"))
    return str(value)


def network_overrides(ckpt: Path) -> list[str]:
    """``configs/train.json`` overrides that build the network ``ckpt`` was trained as and prepare scans as its
    training scans were (from the settings it carries), so that ``--init_ckpt`` accepts it."""
    from hirescam_ext.engines.model_settings import read_model_settings

    settings = read_model_settings(ckpt) or {}
    network, preprocessing = settings.get("network_def") or {}, settings.get("preprocessing") or {}
    if not network or not preprocessing:
        raise SystemExit(f"make demo: {ckpt} records no model settings, so the demo cannot fine-tune it")
    values = {k: v for k, v in network.items() if k not in ("_target_", "pretrained", "n_classes")}
    values.update(preprocessing)  # spatial_size is in both
    return [arg for key, value in values.items() if value is not None for arg in (f"--{key}", _cli_value(value))]


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
    parser.add_argument("--epochs", type=int, help="training epochs (default: 4 fine-tuning, 12 from scratch)")
    parser.add_argument(
        "--from-scratch",
        action="store_true",
        help="train a new AxialNet (small trunk, Adam) instead of fine-tuning the shipped mask-loss model",
    )
    parser.add_argument(
        "--paper-model",
        action="store_true",
        help="train the paper's ResNet-18 AxialNet with SGD from scratch (slow on a CPU)",
    )
    parser.add_argument("--profile", default="demo", help="synthetic profile (tiny for a one-minute smoke run)")
    parser.add_argument("--inference-scans", type=int, default=4, help="test scans to run inference on")
    args = parser.parse_args()

    timings = {}
    from hirescam_ext.synthetic.generator import GENERATOR_VERSION

    # one folder per generator version: a newer generator never meets data an older one wrote
    data = ROOT / "data" / f"synthetic_{args.profile}_v{GENERATOR_VERSION}"
    shape = {"tiny": "[64,64,48]", "small": "[96,96,72]", "demo": "[128,128,96]"}.get(args.profile, "[128,128,96]")
    # the demo's models have a 4 x 4 attention grid, where the paper's nearest sampling of the organ map allows only
    # a third of the lesion cells; area mode (a cell is allowed at 10 % organ) allows three quarters
    # (scripts/eval_allowed_regions.py, docs/ALLOWED_REGIONS.md)
    data_only = ["--dataset_dir", str(data), "--synthetic_profile", args.profile,
                 "--region_mode", "area", "--region_area_threshold", "0.1"]  # fmt: skip
    common = [*data_only, "--spatial_size", shape]
    from_scratch = args.from_scratch or args.paper_model
    epochs = args.epochs if args.epochs is not None else (12 if from_scratch else 4)
    if from_scratch:
        train = [*common, *([] if args.paper_model else ["--trunk", "small", "--optimizer_name", "adam"])]
        evaluate = [*common, *([] if args.paper_model else ["--trunk", "small"])]
        title = f"2/6 train a new AxialNet with the mask loss ({epochs} epochs)"
    else:
        # the shipped twin's network and grid, read from its checkpoint; a small learning rate keeps what it learned
        train = [*data_only, *network_overrides(REFERENCE_MASK), "--init_ckpt", str(REFERENCE_MASK),
                 "--optimizer_name", "adam", "--learning_rate", "2e-4"]  # fmt: skip
        evaluate = data_only  # network and preprocessing come from the fine-tuned checkpoint's settings
        title = (f"2/6 fine-tune the shipped mask-loss model ({REFERENCE_MASK.relative_to(ROOT)}) on the demo's "
                 f"training scans, with the mask loss ({epochs} epochs)")  # fmt: skip
    timings["synthetic data"] = step(
        f"1/6 synthetic chest-CT benchmark ({args.profile} profile) -> {data}",
        [sys.executable, "-m", "hirescam_ext", "synth", "--profile", args.profile, "--out", str(data)],
    )
    timings["train"] = step(title, bundle(["train.json"], *train, "--train#trainer#max_epochs", str(epochs)))
    timings["evaluate"] = step("3/6 evaluate it (AUROC, OrganIoU with HiResCAM and Grad-CAM)",
                               bundle(["train.json", "evaluate.json"], *evaluate))
    # the reference model: everything about its network and input comes from its checkpoint's model settings
    reference = ["--ckpt_path", str(REFERENCE)]
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
    run = "the demo's own run" + ("" if from_scratch else ", fine-tuned from " + REFERENCE_MASK.name)
    print(f"tables:    {out / 'evaluation' / 'REPORT.md'}  ({run}: table1.md, table2.md, ...)")
    print(f"           {REFERENCE_EVAL / 'REPORT.md'}  (the shipped reference model)")
    print(f"pictures:  {out / 'inference'}/<scan>/overlay_<label>.png and slice_scores.png (reference model)")
    print(f"           {mask_out}/<scan>/overlay_<label>.png (its mask-loss twin: compare the two)")
    print(f"maps:      {out / 'inference'}/<scan>/hirescam_<label>.nii.gz (open over the CT in 3D Slicer / ITK-SNAP)")
    print(f"models:    {ROOT / 'models' / 'best.pt'} ({run}; TensorBoard: {out / 'tensorboard'}), {REFERENCE}")
    print(f"\n{run}:\n" + (out / "evaluation" / "table1.md").read_text())
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
