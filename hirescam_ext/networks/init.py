"""Initialization helpers: the output layer's bias at the labels' log prior odds.

With 80 rare abnormalities (most prevalences 1-10 %) a zero output bias starts every sigmoid at 0.5, and the first
hundreds of steps only learn the prevalences, pushing large gradients through a network that has not learned any
feature yet. Starting the bias at ``log(p / (1 - p))`` gives the label prior from step one, so the gradients carry
what the image adds to it (a standard remedy for class imbalance in detection and multi-label classification).
For AxialNet the bias ``b_m`` is added after the slice mean, so HiResCAM (``w_m (.) Z``, no bias) is unchanged.

Example:
    >>> import torch
    >>> from hirescam_ext.networks import AxialNet
    >>> net = AxialNet(n_classes=2, spatial_size=(64, 64), trunk="small", custom_conv_padding=1)
    >>> _ = init_output_bias(net, [0.5, 0.1])
    >>> [round(float(b), 3) for b in net.fc.bias]
    [0.0, -2.197]
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from hirescam_ext.utils.args import as_bool

logger = logging.getLogger(__name__)

__all__ = ["output_layer", "init_output_bias", "log_prior_odds", "prepare_network", "share_fc_cells", "tie_fc_cells"]


def output_layer(network: nn.Module) -> nn.Linear:
    """The network's last ``nn.Linear`` (the classifier output: AxialNet's ``fc``, the others' ``head.out``).

    Raises:
        ValueError: the network has no linear layer.
    """
    last = None
    for module in network.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None:
        raise ValueError(f"{type(network).__name__} has no nn.Linear output layer to initialize")
    return last


def log_prior_odds(prevalence: Sequence[float] | torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``log(p / (1 - p))`` with ``p`` clipped to ``[eps, 1 - eps]`` (a label never seen gets ``logit(eps)``)."""
    p = torch.as_tensor(prevalence, dtype=torch.float64).clamp(eps, 1.0 - eps)
    return torch.log(p / (1.0 - p)).float()


def init_output_bias(
    network: nn.Module, prevalence: Sequence[float] | torch.Tensor, eps: float = 1e-3, enabled: bool | str = True
) -> nn.Module:
    """Set the output layer's bias to the log prior odds of ``prevalence`` (one value per output); returns ``network``.

    Args:
        network: a classifier whose last ``nn.Linear`` has one output per label.
        prevalence: fraction of positive training scans per label (:func:`hirescam_ext.labels.label_prevalence`).
        eps: clipping of the prevalence, so absent labels get a finite bias.
        enabled: ``False`` returns ``network`` unchanged (the configs' ``output_bias_prior`` switch).

    Raises:
        ValueError: the number of prevalences differs from the layer's outputs, or a value is outside [0, 1].
    """
    if not as_bool(enabled, "output_bias_prior"):
        return network
    layer = output_layer(network)
    p = torch.as_tensor(prevalence, dtype=torch.float64).flatten()
    if p.numel() != layer.out_features:
        raise ValueError(f"{p.numel()} prevalences for an output layer of {layer.out_features} labels")
    if bool(((p < 0) | (p > 1) | ~torch.isfinite(p)).any()):
        raise ValueError("prevalences must lie in [0, 1]")
    if layer.bias is None:
        raise ValueError(f"the output layer of {type(network).__name__} has no bias")
    with torch.no_grad():
        layer.bias.copy_(log_prior_odds(p, eps).to(layer.bias))
    return network


def prepare_network(
    network: nn.Module,
    device: torch.device | str = "cpu",
    label_prior: Sequence[float] | None = None,
    output_bias_prior: bool | str = True,
    channels_last: bool | str = False,
    compile: bool | str = False,
    compile_backend: str = "inductor",
) -> nn.Module:
    """What the bundle configs do to ``network_def`` before training: prior bias, device, memory format, compile.

    Args:
        network: the network built from ``network_def``.
        device: where it runs.
        label_prior: training-label prevalences for :func:`init_output_bias`; ``None`` leaves the bias alone.
        output_bias_prior: ``False`` leaves the bias alone too (the configs' switch).
        channels_last: put AxialNet's 2D convolutions in ``channels_last`` format (fast on CUDA; networks without
            ``to_channels_last`` are left as they are).
        compile: wrap ``forward`` and ``forward_all`` (AxialNet's training and CAM entry point) in
            ``torch.compile`` (opt-in; the weights and their state-dict names are unchanged, so checkpoints stay
            interchangeable). Compilation happens on the first call: the first iteration's time includes it, and
            the log says so.
        compile_backend: ``torch.compile`` backend (``"inductor"``; ``"eager"`` checks the wiring without a compiler).

    Returns:
        ``network`` itself, moved to ``device``.
    """
    if label_prior is not None and as_bool(output_bias_prior, "output_bias_prior"):
        init_output_bias(network, label_prior)
    network = network.to(device)
    if as_bool(channels_last, "channels_last") and hasattr(network, "to_channels_last"):
        network.to_channels_last()
    if as_bool(compile, "compile"):
        for name in ("forward", "forward_all"):
            if hasattr(network, name):
                setattr(network, name, torch.compile(getattr(network, name), backend=compile_backend))
        logger.info("torch.compile (backend %s): compiled on first use; the first iteration includes the compile "
                    "time", compile_backend)
    return network


def tie_fc_cells(network: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Start AxialNet's per-cell fully connected weights equal in every cell of the grid (returns ``network``).

    ``fc`` has its own weights ``w_m[f, i, j]`` for every cell ``(i, j)``. Drawn independently (PyTorch's default),
    their signs differ from cell to cell, so a finding that can lie anywhere (a nodule, ground glass) sends gradients
    of opposite sign from different cells into the same shared features. Tied at the start, ``w_m[f, i, j] = v_m[f]``
    with ``v`` drawn as PyTorch draws a linear layer (uniform, bound ``1 / sqrt(F * D1 * D2)``), the network begins as
    global average pooling followed by one linear layer, and training lets the cells part. The architecture, and so
    HiResCAM's exactness, is unchanged.

    Raises:
        ValueError: ``network`` has no ``fc_weight_maps`` (not an AxialNet with a fully connected layer on a grid).
    """
    if not hasattr(network, "fc_weight_maps"):
        raise ValueError(f"{type(network).__name__} has no per-cell fully connected layer (fc_weight_maps) to tie")
    maps = network.fc_weight_maps()  # [M, F, D1, D2], a view of fc.weight
    bound = 1.0 / float(maps[0].numel()) ** 0.5
    v = torch.empty(maps.shape[:2], dtype=torch.float32).uniform_(-bound, bound, generator=generator)
    with torch.no_grad():
        maps.copy_(v[:, :, None, None].expand_as(maps).to(maps))
    return network


def share_fc_cells(network: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Tie AxialNet's per-cell fully connected weights (:func:`tie_fc_cells`) and keep them tied while it trains.

    A hook on ``fc.weight`` replaces its gradient by the gradient's mean over the cells, so every cell gets the same
    update from any optimizer that treats weights element by element (SGD, Adam, with equal weight decay): the read-out
    stays global average pooling followed by one linear layer, with one weight per feature and label, and the network
    cannot tell where in the slice a feature lies. An ablation of the paper's per-cell layer; HiResCAM stays exact (the
    map is ``w_m (.) Z`` with ``w_m`` constant over the cells, the class activation map of a pooled network).

    Raises:
        ValueError: ``network`` has no ``fc_weight_maps`` (not an AxialNet with a fully connected layer on a grid).
    """
    tie_fc_cells(network, generator)
    shape = network.fc_weight_maps().shape  # [M, F, D1, D2]

    def _cell_mean(grad: torch.Tensor) -> torch.Tensor:
        return grad.reshape(shape).mean(dim=(2, 3), keepdim=True).expand(shape).reshape(grad.shape)

    network.fc.weight.register_hook(_cell_mean)
    return network
