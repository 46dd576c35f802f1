"""Build a network without random initialisation and give it every weight of a state dict."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import torch

from retouchd.exceptions import ModelError

NetT = TypeVar("NetT", bound=torch.nn.Module)


def assign_weights(build: Callable[[], NetT], state: Mapping[str, torch.Tensor], family: str) -> NetT:
    """`build()` on the meta device (no init work), then assign `state` strictly; ModelError if it does not fit."""
    with torch.device("meta"):
        net = build()
    try:
        net.load_state_dict(dict(state), strict=True, assign=True)
    except RuntimeError as exc:
        raise ModelError(f"{family} weights do not fit the architecture: {exc}") from exc
    return net.eval()
