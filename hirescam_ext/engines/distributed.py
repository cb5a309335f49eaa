"""Sharded evaluation under ``torchrun``: each rank evaluates part of a split, the metrics gather the rest.

The metrics of the evaluate workflow (:class:`~hirescam_ext.metrics.MultiLabelAUROC`,
:class:`~hirescam_ext.metrics.OrganIoU`, Ignite's ``Average`` of the loss) all-gather their buffers when a process
group is initialized, so a split can be divided between ranks without changing a number: each rank reads its
``1 / world_size`` of the scans (``configs/multi_gpu_evaluate.json`` puts :func:`evaluation_sampler` on every split's
loader) and every rank ends with the metrics of the whole split. Only rank 0 writes the report.

Example:
    >>> sampler = evaluation_sampler(dataset, "test")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch.distributed as dist
from monai.data import DistributedSampler

from hirescam_ext.utils.errors import InputError

__all__ = ["evaluation_sampler", "is_main_process"]


def is_main_process() -> bool:
    """``True`` without a process group, or on rank 0 of one."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def evaluation_sampler(dataset: Any, split: str = "split") -> DistributedSampler:
    """A ``DistributedSampler`` that gives every scan of ``dataset`` to exactly one rank, in order.

    No padding (``even_divisible=False``): a duplicated scan would count twice in the gathered metrics. Each rank
    needs at least one scan, since the metrics gather collectively.

    Raises:
        InputError: ``split`` has fewer scans than there are processes.
    """
    grouped = dist.is_available() and dist.is_initialized()
    world = dist.get_world_size() if grouped else 1
    if len(dataset) < world:
        raise InputError(None, f"the {split} split has {len(dataset)} scan(s) for {world} processes: evaluate it with "
                               f"at most {len(dataset)} process(es) (every rank needs a scan for the gathered metrics)")
    if not grouped:  # one process (a config run without torchrun): every scan, in order
        return DistributedSampler(dataset, even_divisible=False, num_replicas=1, rank=0, shuffle=False)
    return DistributedSampler(dataset, even_divisible=False, shuffle=False)
