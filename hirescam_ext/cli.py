"""The ``hirescam`` command line: one entry point, subcommands implemented next to the code they drive.

Each subcommand is a ``main(argv) -> int`` function in its own module, imported only when it is called, so
``hirescam --help`` stays fast and a subcommand's heavy imports (spaCy, ITK) never slow the others down.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from hirescam_ext.version import __version__

__all__ = ["SUBCOMMANDS", "main"]

#: subcommand -> ("module:function", one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("hirescam_ext.synthetic.generator:main", "generate the synthetic chest-CT benchmark"),
    "segment": ("hirescam_ext.segmentation.cli:main", "segment right lung, left lung and heart/mediastinum"),
    "label": ("hirescam_ext.labeling.cli:main", "label free-text chest CT reports (80 labels + locations)"),
    "regions": ("hirescam_ext.regions.cli:main", "precompute organ maps and allowed regions for a dataset"),
    "datalist": ("hirescam_ext.data.cli:main", "write the data-list JSON of a folder of CTs and a labels CSV"),
    "train": ("hirescam_ext.engines.cli:train_main", "train AxialNet (configs/train.json; --key value overrides)"),
    "evaluate": ("hirescam_ext.engines.cli:evaluate_main", "evaluate a checkpoint: AUROC, OrganIoU (configs/evaluate.json)"),
    "infer": ("hirescam_ext.inference.cli:main", "explain chest CT scans with HiResCAM (maps, overlays, tables)"),
    "bench": ("hirescam_ext.benchmark:main", "run the speed/memory benchmarks and print JSON"),
    "package": ("hirescam_ext.bundle_tools.package:main", "build and check a Model Zoo bundle directory"),
    "reproduce": ("hirescam_ext.reproduce:main", "reproduce the paper's experiments on the synthetic benchmark"),
}


def _usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = [f"hirescam {__version__}", "", "usage: hirescam <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "Run 'hirescam <command> --help' for the options of one command."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``hirescam <command> ...``; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if args[0] in ("-V", "--version"):
        print(f"hirescam {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in SUBCOMMANDS:
        print(f"hirescam: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    target, _ = SUBCOMMANDS[name]
    module_name, func_name = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            print(f"hirescam: command {name!r} is not available in this version ({exc})", file=sys.stderr)
            return 2
        raise
    return int(getattr(module, func_name)(rest) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
