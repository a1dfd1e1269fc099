"""Networks with switches on channel groups, for BayesNAS's structured compression (`compress.py`).

A network is a stack of *units*: conv (→ BN) → ReLU (→ 2x2 max-pool), or linear → ReLU, and a final
linear classifier. The output of every unit except the classifier is multiplied, channel group by
channel group, by a switch: one scalar per `group_size` consecutive channels (the last group of a
layer may be smaller), all switches of the network in one flat vector `SwitchedNet.switches`
(initialised to 1). `forward(x, switches)` takes another vector in its place, so a Hessian can be
taken with respect to the switches alone.

A switch sits after the ReLU (and pooling): a switch of 0 makes its channels exactly 0, so the
channels can be removed from the layer producing them and from the layer consuming them without
changing the function. `param_count(widths)` counts the parameters of that smaller dense network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nas.errors import check

NETWORKS = ("lenet5", "vgg")


@dataclass(frozen=True)
class Unit:
    """One layer of a switched network. `out` = output channels (conv) or features (linear)."""

    kind: str  # "conv" or "linear"
    out: int
    kernel: int = 0
    padding: int = 0
    bias: bool = True
    bn: bool = False
    pool: bool = False


def lenet5_units(width: float = 1.0) -> list[Unit]:
    """LeNet-5: conv5x5 6 (pad 2) → pool → conv5x5 16 → pool → fc 120 → fc 84 (→ classifier)."""
    return [
        Unit("conv", _scaled(6, width), kernel=5, padding=2, pool=True),
        Unit("conv", _scaled(16, width), kernel=5, padding=0, pool=True),
        Unit("linear", _scaled(120, width)),
        Unit("linear", _scaled(84, width)),
    ]


def vgg_units(width: float = 1.0) -> list[Unit]:
    """VGG-style: conv3x3-BN-ReLU [64, 64, M, 128, 128, M, 256, 256, M] → fc 256 (→ classifier)."""
    units = []
    for channels in (64, 128, 256):
        for pool in (False, True):
            units.append(
                Unit(
                    "conv",
                    _scaled(channels, width),
                    kernel=3,
                    padding=1,
                    bias=False,
                    bn=True,
                    pool=pool,
                )
            )
    units.append(Unit("linear", _scaled(256, width)))
    return units


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


class SwitchedNet(nn.Module):
    """A classifier of `units` and a final linear layer, with a switch per channel group.

    `widths` (one per unit) builds the same network with fewer channels: the dense network a
    pruning leaves (used by the tests to check `param_count`).
    """

    def __init__(
        self,
        units: Sequence[Unit],
        num_classes: int,
        in_channels: int,
        image_size: int,
        group_size: int = 1,
        widths: Sequence[int] | None = None,
    ):
        super().__init__()
        check(
            isinstance(group_size, int) and group_size >= 1,
            f"model.group_size={group_size!r} must be an integer >= 1 (channels per switch)",
        )
        if widths is not None:
            check(len(widths) == len(units), f"widths {list(widths)}: one per unit ({len(units)})")
            units = [
                Unit(**{**u.__dict__, "out": int(w)}) for u, w in zip(units, widths, strict=True)
            ]
        self.units = list(units)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        self.group_size = group_size
        # spatial size after the convolutions: the flattened input of the first linear layer
        size = image_size
        for unit in self.units:
            if unit.kind == "conv":
                size = size + 2 * unit.padding - unit.kernel + 1
                check(
                    size >= 1 and (not unit.pool or size >= 2),
                    f"model.image_size={image_size} is too small for this network (a feature map "
                    "shrinks to nothing); use larger images (LeNet-5: >= 12, vgg: >= 8)",
                )
                size = size // 2 if unit.pool else size
        self.flat_size = size  # side of the last feature map
        layers, norms = nn.ModuleList(), nn.ModuleList()
        channels = in_channels
        flattened = False
        for unit in self.units:
            if unit.kind == "conv":
                check(not flattened, "a conv unit cannot follow a linear one")
                layers.append(
                    nn.Conv2d(channels, unit.out, unit.kernel, padding=unit.padding, bias=unit.bias)
                )
                norms.append(nn.BatchNorm2d(unit.out) if unit.bn else nn.Identity())
            else:
                fan_in = channels * self.flat_size**2 if not flattened else channels
                flattened = True
                layers.append(nn.Linear(fan_in, unit.out, bias=unit.bias))
                norms.append(nn.BatchNorm1d(unit.out) if unit.bn else nn.Identity())
            channels = unit.out
        self.layers, self.norms = layers, norms
        fan_in = channels if flattened else channels * self.flat_size**2
        self.classifier = nn.Linear(fan_in, num_classes)
        # switch groups: unit i owns switches [offsets[i], offsets[i] + groups[i])
        self.groups = [math.ceil(u.out / group_size) for u in self.units]
        self.offsets = [sum(self.groups[:i]) for i in range(len(self.units))]
        self.switches = nn.Parameter(torch.ones(sum(self.groups)))
        for i, (unit, groups) in enumerate(zip(self.units, self.groups, strict=True)):
            # [groups, channels] 0/1: switch → its channels (a matmul, which vmap batches)
            expand = torch.zeros(groups, unit.out)
            expand[torch.arange(unit.out) // group_size, torch.arange(unit.out)] = 1
            self.register_buffer(f"expand{i}", expand, persistent=False)

    @property
    def num_switches(self) -> int:
        return int(self.switches.numel())

    def layer_switches(self, switches: torch.Tensor, i: int) -> torch.Tensor:
        """Unit i's group switches from the flat vector `switches`."""
        return switches[self.offsets[i] : self.offsets[i] + self.groups[i]]

    def forward(self, x: torch.Tensor, switches: torch.Tensor | None = None) -> torch.Tensor:
        s = self.switches if switches is None else switches
        check(
            s.shape == self.switches.shape,
            f"switches of shape {tuple(s.shape)}, expected {tuple(self.switches.shape)}",
        )
        for i, (unit, layer, norm) in enumerate(
            zip(self.units, self.layers, self.norms, strict=True)
        ):
            if unit.kind == "linear" and x.dim() > 2:
                x = x.flatten(1)
            x = F.relu(norm(layer(x)))
            if unit.pool:
                x = F.max_pool2d(x, 2)
            gate = self.layer_switches(s, i).to(x.dtype) @ getattr(self, f"expand{i}").to(x.dtype)
            x = x * (gate.view(1, -1, 1, 1) if x.dim() == 4 else gate.view(1, -1))
        return self.classifier(x.flatten(1))

    # -- pruning ------------------------------------------------------------------------------
    def split(self, values: torch.Tensor) -> list[torch.Tensor]:
        """A per-switch vector cut into one piece per unit."""
        return [self.layer_switches(values, i) for i in range(len(self.units))]

    def kept_channels(self, keep: torch.Tensor) -> list[int]:
        """Channels per unit left when the groups whose `keep` is False are removed."""
        keep = keep.detach().float().cpu()
        return [
            int((self.layer_switches(keep, i) @ getattr(self, f"expand{i}").cpu()).sum())
            for i in range(len(self.units))
        ]

    def full_widths(self) -> list[int]:
        return [u.out for u in self.units]

    def param_count(self, widths: Sequence[int] | None = None) -> int:
        """Parameters of this network's dense form with `widths` channels per unit (default: all),
        switches excluded (a kept switch folds into the weights of the layer after it)."""
        widths = self.full_widths() if widths is None else list(widths)
        total, channels, flattened = 0, self.in_channels, False
        for unit, out in zip(self.units, widths, strict=True):
            if unit.kind == "conv":
                fan_in = channels * unit.kernel**2
            else:
                fan_in = channels if flattened else channels * self.flat_size**2
                flattened = True
            total += out * fan_in + (out if unit.bias else 0) + (2 * out if unit.bn else 0)
            channels = out
        fan_in = channels if flattened else channels * self.flat_size**2
        return total + self.num_classes * fan_in + self.num_classes


def build_network(
    network: str,
    num_classes: int,
    in_channels: int,
    image_size: int,
    width: float = 1.0,
    group_size: int = 1,
    widths: Sequence[int] | None = None,
) -> SwitchedNet:
    """`lenet5` or `vgg` (width-scaled) with switches on channel groups of `group_size`."""
    check(
        network in NETWORKS, f"model.network={network!r} is unknown; choose one of {list(NETWORKS)}"
    )
    check(
        isinstance(width, int | float) and width > 0,
        f"model.width={width!r} must be > 0 (a multiplier of the channel counts)",
    )
    units = lenet5_units(width) if network == "lenet5" else vgg_units(width)
    return SwitchedNet(units, num_classes, in_channels, image_size, group_size, widths)
