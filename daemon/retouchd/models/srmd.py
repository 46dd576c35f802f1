"""SRMD / SRMDNF (Zhang, Zuo, Zhang, CVPR 2018): 12 plain 3×3 convolutions and a pixel shuffle.

The network sees RGB in [0, 1] plus 15 constant channels (the PCA code of the degradation kernel) and, for
SRMD with noise, one noise-level channel. Callers may pass those channels (see `with_code`) or only RGB, for
the bundled bicubic code. Those channels are constant over the image, so `forward` folds
them into the first convolution's bias and only convolves RGB: the same result away from the borders,
3/18 of the first layer's work, and no 18-channel input tensor per tile. At the image border the folded
form behaves as if the constant channels continued past the edge, as srmd-ncnn-vulkan's replicate
pre-padding makes them do.

State-dict layout: KAIR's `network_srmd.py` (`model.0.weight` … `model.22.bias`: convolutions at even
indices of one Sequential), so user weights from that release load as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from retouchd.exceptions import ModelError
from retouchd.models.assign import assign_weights
from retouchd.models.ncnn import NcnnNet, conv_weight
from retouchd.models.srmd_code import DEGRADATION_CODE

CONVS = 12
RECEPTIVE_RADIUS = CONVS
"""Each 3×3 convolution sees one more pixel: a tile pad this wide makes tiling exact."""
BYTES_PER_PIXEL = 3 * 128 * 4
"""fp32 activation bytes per input pixel: about three 128-channel maps are alive at once."""


class SRMD(nn.Module):
    """SRMD with the constant channels folded in: forward(B×3×H×W in [0, 1]) → B×3×sH×sW."""

    def __init__(self, scale: int, in_channels: int = 18, features: int = 128, noise_level: float = 0.0):
        super().__init__()
        if in_channels not in (18, 19):
            raise ModelError(f"SRMD takes 18 (no noise) or 19 input channels, not {in_channels}")
        self.scale = scale
        self.noise_level = noise_level
        layers: list[nn.Module] = []
        for index in range(CONVS):
            last = index == CONVS - 1
            layers.append(
                nn.Conv2d(
                    in_channels if index == 0 else features,
                    3 * scale * scale if last else features,
                    3,
                    padding=1,
                )
            )
            layers.append(nn.PixelShuffle(scale) if last else nn.ReLU(inplace=True))
        self.model = nn.Sequential(*layers)
        self.code = DEGRADATION_CODE + ((noise_level / 255.0,) if in_channels == 19 else ())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x is B×3×H×W (the bundled bicubic code and `noise_level` apply) or B×C×H×W with the code (and
        noise) channels after RGB, as the ncnn model takes it; those channels must be constant per image."""
        head = self.model[0]
        assert isinstance(head, nn.Conv2d) and head.bias is not None
        weight = head.weight
        if x.shape[1] == weight.shape[1]:
            code = x[:, 3:, 0, 0]
            x = x[:, :3]
        elif x.shape[1] == 3:
            code = torch.tensor(self.code, dtype=weight.dtype, device=weight.device)[None]
        else:
            raise ModelError(f"SRMD takes 3 or {weight.shape[1]} input channels, not {x.shape[1]}")
        bias = head.bias[None] + torch.einsum("oikl,bi->bo", weight[:, 3:], code.to(weight.dtype))
        x = F.conv2d(x, weight[:, :3].contiguous(), padding=1)
        x = F.relu(x + bias[:, :, None, None], inplace=True)
        for layer in list(self.model)[2:]:
            x = layer(x)
        return x


def from_state_dict(state: Mapping[str, torch.Tensor]) -> SRMD:
    """Build from KAIR's key layout; ModelError if the keys or shapes do not fit."""
    try:
        first = state["model.0.weight"]
        last = state[f"model.{2 * (CONVS - 1)}.weight"]
    except KeyError as exc:
        raise ModelError(f"not an SRMD state dict: key {exc} missing") from exc
    scale = round((last.shape[0] / 3) ** 0.5)
    if 3 * scale * scale != last.shape[0]:
        raise ModelError(f"SRMD last layer has {last.shape[0]} outputs, not 3·scale²")
    channels, features = int(first.shape[1]), int(first.shape[0])
    return assign_weights(lambda: SRMD(scale, in_channels=channels, features=features), state, "SRMD")


def state_dict_from_ncnn(net: NcnnNet) -> dict[str, torch.Tensor]:
    """The ncnn model's weights under KAIR's key names."""
    convs = net.of_type("Convolution")
    if len(convs) != CONVS:
        raise ModelError(f"an SRMD model has {CONVS} convolutions, this one has {len(convs)}")
    state: dict[str, torch.Tensor] = {}
    for index, layer in enumerate(convs):
        state[f"model.{2 * index}.weight"] = torch.from_numpy(conv_weight(layer))
        state[f"model.{2 * index}.bias"] = torch.from_numpy(layer.blobs["bias"])
    return state


Forward = Callable[[torch.Tensor], torch.Tensor]


def with_code(module: Forward, code: Sequence[float]) -> Forward:
    """`module` fed RGB plus constant `code` channels (15 kernel floats, then noise / 255 for SRMD)."""

    def run(x: torch.Tensor) -> torch.Tensor:
        levels = torch.tensor(code, dtype=x.dtype, device=x.device)
        channels = levels.view(1, -1, 1, 1).expand(x.shape[0], -1, x.shape[2], x.shape[3])
        return module(torch.cat([x, channels], dim=1))

    return run
