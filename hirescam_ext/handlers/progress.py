"""A per-scan progress bar with ETA for evaluation and inference runs, naming the scan just done."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar

from hirescam_ext.inference.inputs import scan_name

__all__ = ["ScanProgressBar", "scan_of_output"]


def scan_of_output(output: Any) -> dict[str, str]:
    """``{"scan": name}`` for the scan(s) of an evaluator iteration's output (``{}`` when it names none).

    The name comes from the image's ``filename_or_obj`` metadata or, for a scan that failed to load, from the
    ``source`` of the error report (then marked ``(failed)``).
    """
    if not isinstance(output, Mapping):
        return {}
    failed = output.get("error") is not None
    source = output.get("source") if failed else getattr(output.get("image"), "meta", {}).get("filename_or_obj")
    sources = list(source) if isinstance(source, (list, tuple)) else [source]
    names = [scan_name(str(s)) for s in sources if s]
    if not names:
        return {}
    return {"scan": ", ".join(names) + (" (failed)" if failed else "")}


class ScanProgressBar:
    """Ignite ``ProgressBar`` (tqdm) over the scans of an evaluator: count, elapsed time and ETA, and the name of the
    scan just finished. A MONAI ``val_handlers`` entry (it has ``attach(engine)``).

    Args:
        desc: bar label, for example ``"inference"`` or ``"evaluate test"``.
        persist: keep the finished bar on screen.
        tqdm_kwargs: passed to tqdm (``disable=True`` turns it off, ``file=...`` redirects it).

    Example:
        >>> ScanProgressBar("inference").attach(evaluator)  # doctest: +SKIP
    """

    def __init__(self, desc: str = "scans", persist: bool = True, **tqdm_kwargs: Any) -> None:
        self.bar = ProgressBar(persist=persist, desc=desc, **tqdm_kwargs)

    def attach(self, engine: Engine) -> None:
        self.bar.attach(
            engine, output_transform=scan_of_output, event_name=Events.ITERATION_COMPLETED,
            closing_event_name=Events.EPOCH_COMPLETED,
        )  # fmt: skip
