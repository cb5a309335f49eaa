r"""Learnability audit of the synthetic generator: per label voxels, contrast, oracle AUROC and a verdict.

Writes ``<out>/learnability_<profile>.json`` and ``.md`` (see :mod:`hirescam_ext.synthetic.audit`).

Usage:
    OMP_NUM_THREADS=1 python scripts/eval_learnability.py --profile tiny --scans 400 --out docs/learnability
    # also keep its oracle AUROCs in the package (the visible findings that reports average over)
    OMP_NUM_THREADS=1 python scripts/eval_learnability.py --profile tiny --scans 400 --update-resource
    # the scans as the shipped reference models see them: rendered at 2.9 mm, resampled to tiny's grid
    OMP_NUM_THREADS=1 python scripts/eval_learnability.py --profile tiny --render-profile demo --scans 400 \
        --update-resource
    # or record audits already saved
    python scripts/eval_learnability.py --resource-from docs/learnability/learnability_tiny_v1.4.0.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from hirescam_ext.synthetic.audit import run_audit, to_markdown
from hirescam_ext.synthetic.generator import PROFILES, make_config
from hirescam_ext.synthetic.visibility import VISIBILITY_RESOURCE, update_visibility, visibility_key

RESOURCE = Path(__file__).resolve().parents[1] / "hirescam_ext" / "resources" / VISIBILITY_RESOURCE


def profile_of(shape: list[int]) -> str:
    """The synthetic profile with this grid (an audit JSON written before it recorded its profile)."""
    for name, prof in PROFILES.items():
        if list(prof["shape"]) == list(shape):
            return name
    raise SystemExit(f"no synthetic profile has the grid {shape}; known: "
                     + ", ".join(f"{n} {list(p['shape'])}" for n, p in PROFILES.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=("tiny", "small", "demo"), default="tiny")
    ap.add_argument("--render-profile", choices=("tiny", "small", "demo"), default=None,
                    help="render each scan on this (finer) profile's grid and resample it to --profile's grid with "
                    "the bundle's preprocessing, as a user's scan is prepared (default: render on --profile's grid)")
    ap.add_argument("--scans", type=int, default=300, help="scans generated in memory (default 300)")
    ap.add_argument("--out", default="docs/learnability", help="output folder")
    ap.add_argument("--seed", type=int, default=0, help="dataset seed")
    ap.add_argument("--folds", type=int, default=5, help="cross-validation folds of the oracle")
    ap.add_argument("--tag", default="", help="suffix of the output file names (e.g. the generator version)")
    ap.add_argument("--update-resource", action="store_true",
                    help="also record the audit's oracle AUROCs, lesion voxels and Rose detectability in "
                    "hirescam_ext/resources/learnability.json (they decide the visible findings reports average over)")
    ap.add_argument("--resource-from", nargs="+", metavar="JSON", default=None,
                    help="record these saved audit JSONs in the resource and stop (no new audit); the profile is "
                    "the one whose grid the audit used")
    args = ap.parse_args(argv)
    if args.resource_from:
        for name in args.resource_from:
            try:
                result = json.loads(Path(name).read_text())
                profile = result.get("profile") or profile_of(result["shape"])
                profile = visibility_key(profile, result.get("render_profile"))
                update_visibility(profile, result, RESOURCE)
            except (OSError, KeyError, TypeError, ValueError) as err:
                raise SystemExit(f"{name}: not a readable learnability audit JSON ({type(err).__name__}: {err})")
            print(f"{name}: recorded as profile {profile!r} in {RESOURCE}")
        return 0

    start = time.time()

    def progress(done: int, total: int) -> None:
        if done == total or done % 10 == 0:
            el = time.time() - start
            eta = el / done * (total - done)
            print(f"\r{done}/{total} scans  {el:.0f} s  (eta {eta:.0f} s)", end="", file=sys.stderr)
            if done == total:
                print(file=sys.stderr)

    if args.render_profile == args.profile:
        args.render_profile = None  # rendering on the profile's own grid is no resampling
    config = make_config(args.profile, n_scans=args.scans)
    render = make_config(args.render_profile, n_scans=args.scans) if args.render_profile else None
    if render is not None and max(render.spacing) > min(config.spacing):
        ap.error(f"--render-profile {args.render_profile} ({render.spacing} mm) is not finer than --profile "
                 f"{args.profile} ({config.spacing} mm)")
    result = run_audit(config, seed=args.seed, folds=args.folds, progress=progress, render=render)
    result["seconds"] = round(time.time() - start, 1)
    command = "OMP_NUM_THREADS=1 python scripts/eval_learnability.py " + " ".join(argv or sys.argv[1:])
    result["command"] = command
    result["profile"] = args.profile
    result["render_profile"] = args.render_profile
    key = visibility_key(args.profile, args.render_profile)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"learnability_{key}{('_' + args.tag) if args.tag else ''}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    title = f"Learnability audit: {args.profile}" + (f", rendered at {args.render_profile}'s grid and resampled"
                                                      if args.render_profile else "")
    (out / f"{stem}.md").write_text(to_markdown(result, command=command, title=title))
    for lab, e in result["labels"].items():
        auc = e["oracle_auroc"]
        print(f"{lab:34s} prev {e['prevalence']:.2f}  voxels {e['voxels_median']}  AUROC {auc}  {e['verdict']}")
    print(f"wrote {out / stem}.json/.md in {result['seconds']} s")
    if args.update_resource:
        update_visibility(key, result, RESOURCE)
        print(f"recorded the visibility numbers of {key!r} in {RESOURCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
