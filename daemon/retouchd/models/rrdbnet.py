"""RRDBNet (ESRGAN's generator, as trained by Real-ESRGAN x4plus): residual-in-residual dense blocks.

State-dict layout: BasicSR's `rrdbnet_arch.py` (`conv_first`, `body.N.rdbK.convM`, `conv_body`, `conv_up1`,
`conv_up2`, `conv_hr`, `conv_last`), the layout of the public Real-ESRGAN `.pth` releases. ×2 and ×1
variants of that release put a pixel-unshuffle in front; the input channel count of `conv_first` says which.
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

RECEPTIVE_RADIUS = 10
"""The true field is far wider; Real-ESRGAN's customary tile pad keeps seams below visibility."""
BYTES_PER_PIXEL = 24 * 64 * 4
"""fp32 activation bytes per input pixel: the ×4 tail holds 64-channel maps at 16× the pixels."""
_SLOPE = 0.2
_RESIDUAL = 0.2


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, _SLOPE, inplace=True)


class ResidualDenseBlock(nn.Module):
    def __init__(self, features: int, growth: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, growth, 3, padding=1)
        self.conv2 = nn.Conv2d(features + growth, growth, 3, padding=1)
        self.conv3 = nn.Conv2d(features + 2 * growth, growth, 3, padding=1)
        self.conv4 = nn.Conv2d(features + 3 * growth, growth, 3, padding=1)
        self.conv5 = nn.Conv2d(features + 4 * growth, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = _lrelu(self.conv1(x))
        x2 = _lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = _lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = _lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5: torch.Tensor = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5.mul_(_RESIDUAL).add_(x)


class RRDB(nn.Module):
    def __init__(self, features: int, growth: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(features, growth)
        self.rdb2 = ResidualDenseBlock(features, growth)
        self.rdb3 = ResidualDenseBlock(features, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.rdb3(self.rdb2(self.rdb1(x)))
        return out.mul_(_RESIDUAL).add_(x)


class RRDBNet(nn.Module):
    """forward(B×3×H×W in [0, 1]) → B×3×sH×sW, s in {1, 2, 4}."""

    def __init__(self, scale: int = 4, features: int = 64, blocks: int = 23, growth: int = 32):
        super().__init__()
        if scale not in (1, 2, 4):
            raise ModelError(f"RRDBNet scale must be 1, 2 or 4, not {scale}")
        self.scale = scale
        self.unshuffle = 4 // scale
        self.conv_first = nn.Conv2d(3 * self.unshuffle**2, features, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(features, growth) for _ in range(blocks)))
        self.conv_body = nn.Conv2d(features, features, 3, padding=1)
        self.conv_up1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv_up2 = nn.Conv2d(features, features, 3, padding=1)
        self.conv_hr = nn.Conv2d(features, features, 3, padding=1)
        self.conv_last = nn.Conv2d(features, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = _lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2.0, mode="nearest")))
        feat = _lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2.0, mode="nearest")))
        out: torch.Tensor = self.conv_last(_lrelu(self.conv_hr(feat)))
        return out


def from_state_dict(state: Mapping[str, torch.Tensor]) -> RRDBNet:
    """Build from BasicSR's key layout; ModelError if the keys or shapes do not fit."""
    try:
        first = state["conv_first.weight"]
        growth = int(state["body.0.rdb1.conv1.weight"].shape[0])
    except KeyError as exc:
        raise ModelError(f"not an RRDBNet state dict: key {exc} missing") from exc
    blocks = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"body\.(\d+)\.", k)))
    unshuffle_sq = int(first.shape[1]) // 3
    scale = {1: 4, 4: 2, 16: 1}.get(unshuffle_sq)
    if scale is None or unshuffle_sq * 3 != first.shape[1]:
        raise ModelError(f"RRDBNet conv_first takes {first.shape[1]} channels; expected 3, 12 or 48")
    features = int(first.shape[0])
    return assign_weights(lambda: RRDBNet(scale, features=features, blocks=blocks, growth=growth), state, "RRDBNet")


def state_dict_from_ncnn(net: NcnnNet) -> dict[str, torch.Tensor]:
    """Map the ncnn model's convolutions, in file order, onto BasicSR's key names."""
    convs = net.of_type("Convolution")
    blocks, rest = divmod(len(convs) - 6, 15)
    if rest or blocks < 1:
        raise ModelError(f"{len(convs)} convolutions is not an RRDBNet (6 + 15 per block)")
    names = ["conv_first"]
    names += [f"body.{b}.rdb{r}.conv{c}" for b in range(blocks) for r in (1, 2, 3) for c in range(1, 6)]
    names += ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]
    state: dict[str, torch.Tensor] = {}
    for name, layer in zip(names, convs, strict=True):
        state[f"{name}.weight"] = torch.from_numpy(conv_weight(layer))
        state[f"{name}.bias"] = torch.from_numpy(layer.blobs["bias"])
    return state
