"""SRVGGNetCompact (Real-ESRGAN's realesr-animevideov3 / general-x4v3): plain convs + PReLU, pixel shuffle,
plus a nearest-neighbour upsample of the input added to the output.

State-dict layout: Real-ESRGAN's `srvgg_arch.py` (`body.0` conv, `body.1` PReLU, …, last conv), the layout
of the public `.pth` releases.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from retouchd.exceptions import ModelError
from retouchd.models.assign import assign_weights
from retouchd.models.ncnn import NcnnNet, conv_weight

BYTES_PER_PIXEL = 4 * 64 * 4 + 2 * 48 * 4
"""fp32 activation bytes per input pixel: two 64-channel maps, the 48-channel tail and its shuffle."""


class SRVGGNetCompact(nn.Module):
    """forward(B×3×H×W in [0, 1]) → B×3×sH×sW."""

    def __init__(self, scale: int = 4, features: int = 64, convs: int = 16):
        super().__init__()
        self.scale = scale
        self.convs = convs
        layers: list[nn.Module] = [nn.Conv2d(3, features, 3, padding=1), nn.PReLU(features)]
        for _ in range(convs):
            layers += [nn.Conv2d(features, features, 3, padding=1), nn.PReLU(features)]
        layers.append(nn.Conv2d(features, 3 * scale * scale, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.upsampler = nn.PixelShuffle(scale)

    @property
    def receptive_radius(self) -> int:
        return self.convs + 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.upsampler(self.body(x))
        return out.add_(F.interpolate(x, scale_factor=float(self.scale), mode="nearest"))


def from_state_dict(state: Mapping[str, torch.Tensor]) -> SRVGGNetCompact:
    """Build from Real-ESRGAN's key layout; ModelError if the keys or shapes do not fit."""
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.weight$", k))})
    if not indices or indices[0] != 0 or state["body.0.weight"].ndim != 4:
        raise ModelError("not an SRVGGNetCompact state dict: body.0.weight (a convolution) missing")
    last = state[f"body.{indices[-1]}.weight"]
    scale = round((last.shape[0] / 3) ** 0.5)
    convs = (indices[-1] - 2) // 2
    if 3 * scale * scale != last.shape[0] or indices[-1] != 2 * convs + 2:
        raise ModelError(f"SRVGGNetCompact layout not recognised (last layer body.{indices[-1]})")
    features = int(state["body.0.weight"].shape[0])
    return assign_weights(lambda: SRVGGNetCompact(scale, features=features, convs=convs), state, "SRVGGNetCompact")


def state_dict_from_ncnn(net: NcnnNet) -> dict[str, torch.Tensor]:
    """Map the ncnn model's Convolution and PReLU layers, in file order, onto Real-ESRGAN's key names."""
    state: dict[str, torch.Tensor] = {}
    index = 0
    for layer in net.layers:
        if layer.type == "Convolution":
            state[f"body.{index}.weight"] = torch.from_numpy(conv_weight(layer))
            state[f"body.{index}.bias"] = torch.from_numpy(layer.blobs["bias"])
            index += 1
        elif layer.type == "PReLU":
            state[f"body.{index}.weight"] = torch.from_numpy(layer.blobs["slope"])
            index += 1
    if index < 3 or index % 2 == 0:
        raise ModelError(f"{index} conv/PReLU layers is not an SRVGGNetCompact")
    return state
