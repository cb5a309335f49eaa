"""A progress bar over the scans of an evaluation or inference run, with the scan's name and an ETA."""

from __future__ import annotations

import io

import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from hirescam_ext.handlers import ScanProgressBar, scan_of_output


def test_scan_of_output_names_loaded_and_failed_scans() -> None:
    image = MetaTensor(torch.zeros(1, 1, 2, 2, 2), meta={"filename_or_obj": ["/data/p1/ct-64.nrrd"]})
    assert scan_of_output({"image": image}) == {"scan": "ct-64"}
    assert scan_of_output({"error": ["unreadable"], "source": ["/data/bad.nii.gz"]}) == {"scan": "bad (failed)"}


def test_progress_bar_shows_count_eta_and_scan_name() -> None:
    names = ["a.nii.gz", "b.nii.gz", "c.nii.gz"]
    engine = Engine(lambda e, i: {"image": MetaTensor(torch.zeros(1, 1), meta={"filename_or_obj": [names[i]]})})
    stream = io.StringIO()
    ScanProgressBar("inference", file=stream, mininterval=0).attach(engine)
    engine.run(range(3), max_epochs=1)
    text = stream.getvalue()
    assert "inference" in text and "3/3" in text and "scan=c" in text and "<" in text  # [elapsed<remaining]
