"""``hirescam train`` and ``hirescam evaluate``: the bundle's training and evaluation behind one command each.

Thin wrappers over ``configs/train.json`` and ``configs/train.json`` + ``configs/evaluate.json`` run through
:class:`monai.bundle.ConfigWorkflow`, so they do exactly what ``python -m monai.bundle run`` does with the same
overrides; what they add is the error handling of ``hirescam infer``: an expected fault (a missing dataset, an
unreadable checkpoint, a setting that contradicts the checkpoint, a bad value) ends in one line on stderr and exit
status 2 instead of a traceback through fire and MONAI's expression evaluator (``--debug`` shows it).

Any config entry is an option, written as for ``monai.bundle run`` (``--key value``, ``#`` for nested keys); values
are read as Python literals when they parse (``5``, ``1e-3``, ``[64,64,48]``, ``None``), ``true``/``false`` in any
case as booleans, anything else as a string (``none`` stays the string the ``cache`` option expects).

Example:
    $ hirescam train --dataset_dir data/synthetic --trunk small --train#trainer#max_epochs 5
    $ hirescam evaluate --dataset_dir data/synthetic --ckpt_path bundle/models/reference.pt
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Sequence
from typing import Any

from hirescam_ext.inference.cli import configs_dir, report_faults
from hirescam_ext.utils.errors import InputError

__all__ = ["parse_overrides", "run_workflow", "train_main", "evaluate_main"]

#: subcommand -> (config files, ConfigWorkflow workflow_type)
WORKFLOWS: dict[str, tuple[tuple[str, ...], str]] = {
    "train": (("train.json",), "train"),
    "evaluate": (("train.json", "evaluate.json"), "eval"),
}


def _value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(argv: Sequence[str], prog: str) -> tuple[dict[str, Any], bool]:
    """``--key value`` pairs (or ``--key=value``) as config overrides, and whether ``--debug`` was given.

    Raises:
        InputError: an argument that is not ``--key``, or a key without a value.
    """
    overrides: dict[str, Any] = {}
    debug = False
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--debug":
            debug, i = True, i + 1
            continue
        if not arg.startswith("--") or len(arg) == 2:
            raise InputError(None, f"expected --key value, got {arg!r} (see {prog} --help)")
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(args):
                raise InputError(None, f"option --{key} needs a value")
            value, i = args[i + 1], i + 1
        overrides[key] = _value(value)
        i += 1
    return overrides, debug


def run_workflow(name: str, overrides: dict[str, Any]) -> int:
    """Run the ``name`` workflow (``train`` or ``evaluate``) of the bundle with ``overrides``; return 0."""
    from monai.bundle import ConfigWorkflow

    files, workflow_type = WORKFLOWS[name]
    configs = configs_dir()
    overrides = {"bundle_root": str(configs.parent), **overrides}
    config_file = [str(configs / f) for f in files]
    workflow = ConfigWorkflow(
        config_file=config_file[0] if len(config_file) == 1 else config_file,
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        workflow_type=workflow_type,
        **overrides,
    )
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    return 0


def _usage(name: str) -> str:
    files = " + ".join(f"configs/{f}" for f in WORKFLOWS[name][0])
    return (
        f"usage: hirescam {name} [--key value ...] [--debug]\n\n{__doc__.splitlines()[0]}\n\nRuns {files} (as "
        f"python -m monai.bundle run does) with the given config overrides, e.g. --dataset_dir DIR; an expected "
        f"fault is one line on stderr and exit status 2."
    )


def _main(name: str, argv: Sequence[str] | None) -> int:
    prog = f"hirescam {name}"
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(_usage(name))
        return 0
    return report_faults(prog, lambda: run_workflow(name, parse_overrides(args, prog)[0]), "--debug" in args)


def train_main(argv: Sequence[str] | None = None) -> int:
    """``hirescam train``: ``configs/train.json`` with overrides; returns the exit status."""
    return _main("train", argv)


def evaluate_main(argv: Sequence[str] | None = None) -> int:
    """``hirescam evaluate``: ``configs/train.json`` + ``configs/evaluate.json`` with overrides; returns the exit
    status."""
    return _main("evaluate", argv)
