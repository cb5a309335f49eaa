"""``hirescam infer``: explain a folder of chest CT scans with one command.

A thin wrapper around the bundle's own ``configs/inference.json`` run through :class:`monai.bundle.ConfigWorkflow`,
so the command and ``python -m monai.bundle run --config_file configs/inference.json`` do exactly the same work: the
network and the preprocessing come from the checkpoint's model settings, a progress bar counts the scans, a bad scan
is reported in ``failures.csv`` and skipped.

Expected faults (a missing input folder, no scans in it, an unreadable checkpoint, an override that contradicts the
checkpoint) end in one line on stderr, ``hirescam infer: <file>: <problem>``, and exit status 2; ``--debug`` shows the
traceback instead. When some scans fail and the others are written, the exit status is 1.

Without ``--model`` the bundle's ``models/best.pt`` (your training run) is used; in a checkout that has none, the
shipped reference model ``bundle/models/reference.pt`` is, and the command says so.

Example:
    $ hirescam infer -i scans/ -o outputs/inference --model models/best.pt --top-k 3
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hirescam_ext.utils.errors import InputError

__all__ = [
    "EXIT_FAILED_SCANS",
    "EXIT_USAGE",
    "build_overrides",
    "configs_dir",
    "default_model",
    "expected_fault",
    "main",
    "report_faults",
]

PROG = "hirescam infer"
#: exit status of an expected fault (bad input, checkpoint or setting), as argparse uses for usage errors
EXIT_USAGE = 2
#: exit status when the run finished but some scans failed and were skipped
EXIT_FAILED_SCANS = 1
#: longest message printed for an expected fault (PyTorch's unpickling errors run to several paragraphs)
MAX_MESSAGE_CHARS = 600


def configs_dir() -> Path:
    """The bundle's ``configs`` folder, next to the installed package (as the reproduce workflows find it)."""
    return Path(__file__).resolve().parents[2] / "configs"


def default_model(bundle_root: Path) -> Path:
    """The checkpoint used without ``--model``: ``models/best.pt`` of ``bundle_root`` (what training writes), or
    the shipped reference model ``bundle/models/reference.pt`` when there is no such file and the reference is there
    (a fresh checkout); else ``models/best.pt`` (whose absence the run then reports)."""
    trained = bundle_root / "models" / "best.pt"
    reference = bundle_root / "bundle" / "models" / "reference.pt"
    return reference if not trained.is_file() and reference.is_file() else trained


def expected_fault(exc: BaseException) -> BaseException | None:
    """Our own error inside ``exc``'s chain: the first :class:`InputError`, else the first ``ValueError``.

    MONAI wraps an expression's failure in ``RuntimeError("Failed to evaluate ...")`` (several times for nested
    references), so the chain is walked through ``__cause__`` and ``__context__``. ``None`` when the chain holds
    neither: an unexpected error, shown with its traceback.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for kind in (InputError, ValueError):
        found = next((e for e in chain if isinstance(e, kind)), None)
        if found is not None:
            return found
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 3] + "..."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Explain chest CT scans with HiResCAM: per scan, maps of the most probable abnormalities, "
        "overlays, slice scores and result.json; for the run probabilities.csv, failures.csv and summary.json. "
        "The network and the preprocessing come from the checkpoint's model settings.",
    )
    parser.add_argument("-i", "--input", required=True, help="a scan, or a folder of scans (searched recursively)")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--model", help="checkpoint (default: models/best.pt of the bundle, or the shipped reference "
                        "model bundle/models/reference.pt when there is none)")
    parser.add_argument(
        "--model-settings", help="model_settings.json for a bare state dict (a packaged bundle's models/model.pt)"
    )
    parser.add_argument("--device", help="torch device, e.g. cpu or cuda:0 (default: cuda:0 when available)")
    parser.add_argument("--top-k", type=int, help="maps for the k most probable abnormalities (default 3)")
    parser.add_argument("--labels", nargs="+", metavar="LABEL", help="write maps for these labels instead of top-k")
    parser.add_argument("--max-scans", type=int, help="process at most this many scans")
    parser.add_argument("--redo", action="store_true", help="redo scans already finished in the output folder")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return parser


def build_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``configs/inference.json`` overrides for the parsed command line (unset options keep the config's)."""
    overrides: dict[str, Any] = {
        "bundle_root": str(configs_dir().parent),
        "input_dir": str(args.input),
        "output_dir": str(args.output),
    }
    overrides["ckpt_path"] = str(args.model if args.model is not None else default_model(configs_dir().parent))
    if args.model_settings is not None:
        overrides["model_settings_file"] = str(args.model_settings)
    if args.device is not None:
        overrides["device"] = f"$torch.device({args.device!r})"
    if args.top_k is not None:
        if args.top_k < 1:
            raise InputError(None, f"--top-k must be at least 1, got {args.top_k}")
        overrides["top_k"] = args.top_k
    if args.labels is not None:
        overrides["report_labels"] = list(args.labels)
    if args.max_scans is not None:
        if args.max_scans < 1:
            raise InputError(None, f"--max-scans must be at least 1, got {args.max_scans}")
        overrides["max_scans"] = args.max_scans
    if args.redo:
        overrides["skip_done"] = False
    return overrides


def _run(args: argparse.Namespace) -> int:
    from monai.bundle import ConfigWorkflow

    from hirescam_ext.inference.inputs import find_ct_inputs

    overrides = build_overrides(args)
    find_ct_inputs(args.input)  # a missing or empty input fails before the model is loaded
    if args.model is None:
        print(f"{PROG}: model {overrides['ckpt_path']}" + (
            " (the shipped reference model, trained on the synthetic benchmark: its probabilities say nothing about "
            "real patients; --model PATH for your own)" if "bundle/models" in Path(overrides["ckpt_path"]).as_posix()
            else ""), file=sys.stderr)  # fmt: skip
    configs = configs_dir()
    workflow = ConfigWorkflow(
        config_file=str(configs / "inference.json"),
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        workflow_type="infer",
        **overrides,
    )
    workflow.initialize()
    workflow.run()
    writer = workflow.parser.get_parsed_content("writer")
    if getattr(writer, "failures", None):
        try:
            workflow.finalize()
        except RuntimeError as exc:
            print(f"{PROG}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILED_SCANS
    workflow.finalize()
    return 0


def report_faults(prog: str, run: Callable[[], int], debug: bool = False) -> int:
    """``run()``'s exit status; an expected fault (:func:`expected_fault`) becomes one line ``<prog>: <problem>`` on
    stderr and :data:`EXIT_USAGE`, an interrupt exit status 130; anything else (or anything with ``debug``) raises.
    Shared by the ``hirescam`` commands that run bundle configs (``infer``, ``train``, ``evaluate``)."""
    try:
        return run()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - expected faults become one line, the rest keep their traceback
        fault = expected_fault(exc)
        if fault is None or debug:
            raise
        print(f"{prog}: {_one_line(fault)}", file=sys.stderr)
        return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hirescam infer``; returns the exit status (0 done, 1 some scans failed, 2 an expected fault)."""
    args = _parser().parse_args(argv)
    return report_faults(PROG, lambda: _run(args), args.debug)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
