"""hirescam-ext: HiResCAM, AxialNet, the mask loss and OrganIoU for explainable chest CT, as MONAI components.

Reference: R. L. Draelos and L. Carin, "Use HiResCAM instead of Grad-CAM for faithful explanations of
convolutional neural networks" / "HiResCAM: Explainable Multi-Organ Multi-Abnormality Prediction in 3D Medical
Images", arXiv:2011.08891.
"""

from __future__ import annotations

from hirescam_ext.labels import LABEL_NAMES, LOCATION_NAMES, label_table
from hirescam_ext.version import __version__

__all__ = ["__version__", "LABEL_NAMES", "LOCATION_NAMES", "label_table"]
