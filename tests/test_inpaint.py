"""The inpainting engines and their shared crop / scale / paste-back work (retouchd.inpaint)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import warnings
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np
import pytest
import torch

from retouchd.exceptions import ConfigError, ModelError
from retouchd.inpaint import ENGINES, engine_class, inpaint, preflight
from retouchd.inpaint.base import InpaintEngine
from retouchd.inpaint.patch import PatchEngine
from retouchd.steps.base import StepContext
from retouchd.typing import Mask, RGBImage

MAGENTA = np.array([255, 0, 255], dtype=np.uint8)


def periodic(height: int, width: int, seed: int = 0) -> RGBImage:
    """A random 8×8 tile repeated: every hole patch exists, exactly, outside the hole."""
    tile = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return np.ascontiguousarray(np.tile(tile, (height // 8 + 1, width // 8 + 1, 1))[:height, :width])


def stochastic(height: int, width: int, seed: int = 0) -> RGBImage:
    """Blurred noise, strong in brightness and weak in colour: texture with no exact repeats, never magenta."""
    noise = np.random.default_rng(seed).normal(0, 1, (height, width, 4)).astype(np.float32)
    soft = cv2.GaussianBlur(noise, (0, 0), 1.2)
    soft = (soft - soft.mean(axis=(0, 1))) / soft.std(axis=(0, 1))
    rgb = 128 + 45 * soft[..., :1] + 8 * soft[..., 1:]
    return np.clip(rgb, 0, 255).astype(np.uint8)


def disc(height: int, width: int, cy: int, cx: int, radius: int) -> Mask:
    yy, xx = np.mgrid[:height, :width]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2


def with_object(image: RGBImage, hole: Mask) -> RGBImage:
    """Magenta inside the hole: what the user wants gone."""
    out = image.copy()
    out[hole] = MAGENTA
    return out


def psnr(a: RGBImage, b: RGBImage, where: Mask) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64))[where] ** 2).mean())
    return 10 * np.log10(255**2 / max(mse, 1e-10))


def texture_ratio(image: RGBImage, hole: Mask) -> float:
    """Gradient energy in the hole over that of a 12 px ring around it."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    energy = cv2.Sobel(gray, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(gray, cv2.CV_32F, 0, 1) ** 2
    ring = cv2.dilate(hole.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool) & ~hole
    return float(energy[hole].mean() / energy[ring].mean())


@pytest.fixture
def ctx() -> StepContext:
    return StepContext(rule="test", source=Path("test.png"))


def test_engine_names() -> None:
    """The rule-facing names, default first; an unknown one is a ConfigError naming the choices."""
    assert ENGINES == ("patch", "telea", "lama", "migan")
    with pytest.raises(ConfigError, match="patch, telea, lama, migan"):
        engine_class("photoshop")


def test_import_is_light() -> None:
    """Importing the package and the step pulls in neither torch, OpenCV nor onnxruntime."""
    code = (
        "import sys, retouchd.inpaint, retouchd.steps.remove_objects; "
        "print(sorted(m for m in ('torch', 'cv2', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("engine", ["patch", "telea"])
def test_empty_mask_is_identity(engine: str, ctx: StepContext) -> None:
    """No masked pixel: the very same array comes back."""
    image = stochastic(40, 50)
    assert inpaint(image, np.zeros((40, 50), dtype=bool), engine=engine, ctx=ctx) is image


@pytest.mark.parametrize("engine", ["patch", "telea"])
def test_only_masked_pixels_change_and_no_trace_remains(engine: str, ctx: StepContext) -> None:
    """Pixels outside the mask are bit-identical; inside, nothing magenta is left."""
    truth = stochastic(80, 96, seed=1)
    hole = disc(80, 96, 40, 48, 12)
    out = inpaint(with_object(truth, hole), hole, engine=engine, ctx=ctx)
    assert np.array_equal(out[~hole], truth[~hole])
    distance = np.linalg.norm(out[hole].astype(np.float32) - MAGENTA.astype(np.float32), axis=1)
    assert float(distance.min()) > 120


def test_patch_reproduces_a_periodic_texture(ctx: StepContext) -> None:
    """A hole in a repeated tile is filled back almost exactly; Telea cannot."""
    truth = periodic(96, 96)
    hole = disc(96, 96, 48, 48, 14)
    given = with_object(truth, hole)
    patch = psnr(inpaint(given, hole, engine="patch", ctx=ctx), truth, hole)
    telea = psnr(inpaint(given, hole, engine="telea", ctx=ctx), truth, hole)
    assert patch > 35
    assert patch > telea + 15


def test_patch_keeps_stochastic_texture(ctx: StepContext) -> None:
    """On texture without repeats, patch fills as textured as the surroundings; Telea smears."""
    truth = stochastic(112, 112, seed=2)
    hole = disc(112, 112, 56, 56, 18)
    given = with_object(truth, hole)
    patch = inpaint(given, hole, engine="patch", ctx=ctx)
    telea = inpaint(given, hole, engine="telea", ctx=ctx)
    assert 0.6 <= texture_ratio(patch, hole) <= 1.6
    assert texture_ratio(telea, hole) < 0.5


def test_patch_continues_a_long_edge(ctx: StepContext) -> None:
    """A horizon through the hole stays at its row: dark texture above, bright below."""
    dark = stochastic(96, 128, seed=3) // 3
    bright = 170 + stochastic(96, 128, seed=4) // 3
    truth = np.where((np.arange(96) < 48)[:, None, None], dark, bright).astype(np.uint8)
    hole = disc(96, 128, 48, 64, 16)
    out = inpaint(with_object(truth, hole), hole, engine="patch", ctx=ctx)
    gray = out.mean(axis=2)
    above = hole & (np.arange(96) < 45)[:, None]
    below = hole & (np.arange(96) >= 51)[:, None]
    assert gray[above].mean() < 70
    assert gray[below].mean() > 170
    rows = [int(np.argmax(gray[:, x] > 120)) for x in range(56, 73)]
    assert abs(float(np.median(rows)) - 48) <= 1


def test_patch_is_deterministic(ctx: StepContext) -> None:
    """The same input gives the same bytes (the random search is seeded)."""
    truth = stochastic(64, 64, seed=5)
    hole = disc(64, 64, 32, 32, 9)
    digests = {hashlib.sha256(inpaint(truth, hole, engine="patch", ctx=ctx).tobytes()).hexdigest() for _ in range(2)}
    assert len(digests) == 1


def test_telea_fills_a_thin_stroke(ctx: StepContext) -> None:
    """A 3 px line across a smooth gradient comes back within a few levels."""
    yy, xx = np.mgrid[:60, :80]
    truth = np.dstack([xx * 3, yy * 4, (xx + yy) * 2]).clip(0, 255).astype(np.uint8)
    hole = np.zeros((60, 80), dtype=bool)
    hole[29:32, 5:75] = True
    out = inpaint(with_object(truth, hole), hole, engine="telea", ctx=ctx)
    assert psnr(out, truth, hole) > 38


def test_full_mask_gives_grey(ctx: StepContext) -> None:
    """With nothing to copy from, the image becomes neutral grey instead of failing."""
    out = inpaint(stochastic(20, 30), np.ones((20, 30), dtype=bool), engine="patch", ctx=ctx)
    assert np.all(out == 128)


class SpyEngine(InpaintEngine):
    """Fills with a constant and records the crops it was given."""

    name: ClassVar[str] = "spy"
    min_margin: ClassVar[int] = 20
    max_margin: ClassVar[int] = 40
    margin_factor: ClassVar[float] = 0.0
    max_solve_pixels: ClassVar[int | None] = None

    def __init__(self, ctx: StepContext) -> None:
        super().__init__(ctx)
        self.crops: list[tuple[int, int]] = []

    def solve(self, rgb: RGBImage, hole: Mask) -> RGBImage:
        self.crops.append(hole.shape)
        out = rgb.copy()
        out[hole] = 77
        return out


def test_crops_stay_near_their_components(ctx: StepContext) -> None:
    """Two far-apart blobs are solved in two small crops, never the whole 1200×900 image."""
    image = stochastic(900, 1200)
    hole = disc(900, 1200, 100, 100, 10) | disc(900, 1200, 700, 1000, 15)
    engine = SpyEngine(ctx)
    out = engine.fill(image, hole)
    assert sorted(engine.crops) == [(21 + 40, 21 + 40), (31 + 40, 31 + 40)]
    assert np.all(out[hole] == 77)
    assert np.array_equal(out[~hole], image[~hole])


def test_overlapping_crops_merge(ctx: StepContext) -> None:
    """Components whose margins overlap are solved together, in one crop."""
    image = stochastic(200, 200)
    hole = disc(200, 200, 100, 80, 5) | disc(200, 200, 100, 120, 5)
    engine = SpyEngine(ctx)
    engine.fill(image, hole)
    assert engine.crops == [(11 + 40, 51 + 40)]


def test_large_crop_is_solved_at_reduced_scale(ctx: StepContext) -> None:
    """A crop over max_solve_pixels reaches the engine shrunk, and the fill still covers the hole."""

    class Small(SpyEngine):
        max_solve_pixels: ClassVar[int | None] = 2500

    image = stochastic(300, 300)
    hole = disc(300, 300, 150, 150, 60)
    engine = Small(ctx)
    out = engine.fill(with_object(image, hole), hole)
    (h, w), = engine.crops
    assert h * w <= 2500 + 2 * (h + w)
    assert np.all(out[disc(300, 300, 150, 150, 50)] == 77)
    distance = np.linalg.norm(out[hole].astype(np.float32) - MAGENTA.astype(np.float32), axis=1)
    assert float(distance.min()) > 120


def test_patch_reduced_scale_stays_sharp(ctx: StepContext) -> None:
    """The reduced-scale path refines at full size: texture survives, masked content does not."""

    class SmallPatch(PatchEngine):
        max_solve_pixels: ClassVar[int | None] = 3000

    truth = stochastic(128, 128, seed=6)
    hole = disc(128, 128, 64, 64, 20)
    out = SmallPatch(ctx).fill(with_object(truth, hole), hole)
    assert 0.6 <= texture_ratio(out, hole) <= 1.6
    distance = np.linalg.norm(out[hole].astype(np.float32) - MAGENTA.astype(np.float32), axis=1)
    assert float(distance.min()) > 120


def test_patch_memory_follows_the_crop(ctx: StepContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 30 px blob in a 3000×2000 image makes the solver see a ~126 px crop, not 6 MP."""
    import retouchd.inpaint.patch as patch_module

    seen: list[tuple[int, ...]] = []
    real = patch_module.complete

    def spy(rgb: torch.Tensor, hole: torch.Tensor, params: object, *structure: object) -> object:
        seen.append(tuple(rgb.shape))
        return real(rgb, hole, params, *structure)  # type: ignore[arg-type]

    monkeypatch.setattr(patch_module, "complete", spy)
    image = np.full((2000, 3000, 3), 90, dtype=np.uint8)
    image[::2] = 140
    hole = np.zeros((2000, 3000), dtype=bool)
    hole[985:1015, 1485:1515] = True
    out = inpaint(image, hole, engine="patch", ctx=ctx)
    assert seen == [(3, 30 + 2 * 48, 30 + 2 * 48)]
    assert np.array_equal(out, image)


class LoadCounter:
    """A ModelCache that counts loads."""

    def __init__(self) -> None:
        self.items: dict[str, object] = {}
        self.loads = 0

    def get(self, key: str, load: object) -> object:
        if key not in self.items:
            self.loads += 1
            self.items[key] = load()  # type: ignore[operator]
        return self.items[key]


class TinyLama(torch.nn.Module):
    """IOPaint's LaMa signature; the fill value tells what the model saw (sizes ÷ 8, blanked hole)."""

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        aligned = 1.0 if image.shape[2] % 8 == 0 and image.shape[3] % 8 == 0 else 0.0
        leak = (image * mask).amax()
        return image * (1 - mask) + (0.25 + 0.5 * aligned + leak) * mask


@pytest.fixture
def tiny_lama(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-lama.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(TinyLama()).save(str(path))
    return path


def test_lama_runs_a_torchscript_file(tiny_lama: Path) -> None:
    """The hole gets the model's fill (sizes padded to ÷ 8, masked pixels blanked); the model loads once."""
    cache = LoadCounter()
    ctx = StepContext(rule="r", source=Path("a.png"), engines={"lama": str(tiny_lama)}, models=cache)
    truth = stochastic(61, 75)
    hole = disc(61, 75, 30, 37, 8)
    given = with_object(truth, hole)
    out = inpaint(given, hole, engine="lama", ctx=ctx)
    assert np.all(out[hole] == 191)
    assert np.array_equal(out[~hole], truth[~hole])
    inpaint(given, hole, engine="lama", ctx=ctx)
    assert cache.loads == 1


def test_lama_preflight_and_bad_file(tmp_path: Path, tiny_lama: Path) -> None:
    """No path or a missing file stops start-up; a file that is not TorchScript is a ModelError."""
    with pytest.raises(ConfigError, match=r"engines\.lama"):
        preflight("lama", {})
    with pytest.raises(ConfigError, match="does not exist"):
        preflight("lama", {"lama": str(tmp_path / "nope.pt")})
    preflight("lama", {"lama": str(tiny_lama)})
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 64)
    ctx = StepContext(rule="r", source=Path("a.png"), engines={"lama": str(junk)})
    with pytest.raises(ModelError, match=r"junk\.pt"):
        inpaint(stochastic(32, 32), disc(32, 32, 16, 16, 4), engine="lama", ctx=ctx)


def tiny_migan(path: Path) -> Path:
    """MI-GAN's pipeline signature: uint8 image and mask (255 = keep) in, composited uint8 out; fill 200."""
    onnx = pytest.importorskip("onnx")
    helper, tensor = onnx.helper, onnx.TensorProto
    nodes = [
        helper.make_node("Cast", ["image"], ["img"], to=tensor.FLOAT),
        helper.make_node("Cast", ["mask"], ["m"], to=tensor.FLOAT),
        helper.make_node("Div", ["m", "c255"], ["keep"]),
        helper.make_node("Sub", ["one", "keep"], ["gap"]),
        helper.make_node("Mul", ["img", "keep"], ["kept"]),
        helper.make_node("Mul", ["gap", "c200"], ["fill"]),
        helper.make_node("Add", ["kept", "fill"], ["sum"]),
        helper.make_node("Cast", ["sum"], ["result"], to=tensor.UINT8),
    ]
    consts = [helper.make_tensor(n, tensor.FLOAT, [], [v]) for n, v in (("c255", 255.0), ("one", 1.0), ("c200", 200.0))]
    graph = helper.make_graph(
        nodes,
        "tiny_migan",
        [
            helper.make_tensor_value_info("image", tensor.UINT8, [1, 3, "h", "w"]),
            helper.make_tensor_value_info("mask", tensor.UINT8, [1, 1, "h", "w"]),
        ],
        [helper.make_tensor_value_info("result", tensor.UINT8, [1, 3, "h", "w"])],
        initializer=consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_migan_runs_an_onnx_pipeline(tmp_path: Path) -> None:
    """The hole gets the pipeline's fill, everything else is untouched; the session is cached."""
    path = tiny_migan(tmp_path / "migan.onnx")
    preflight("migan", {"migan": str(path)})
    cache = LoadCounter()
    ctx = StepContext(rule="r", source=Path("a.png"), engines={"migan": str(path)}, models=cache)
    truth = stochastic(50, 70)
    hole = disc(50, 70, 25, 35, 7)
    out = inpaint(with_object(truth, hole), hole, engine="migan", ctx=ctx)
    assert np.all(out[hole] == 200)
    assert np.array_equal(out[~hole], truth[~hole])
    inpaint(truth, hole, engine="migan", ctx=ctx)
    assert cache.loads == 1


def test_migan_preflight_missing_file(tmp_path: Path) -> None:
    """A configured but absent MI-GAN file stops start-up with the path in the message."""
    with pytest.raises(ConfigError, match=r"missing\.onnx"):
        preflight("migan", {"migan": str(tmp_path / "missing.onnx")})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_patch_on_cuda_matches_quality() -> None:
    """On the GPU the patch engine reproduces a periodic texture as well as on the CPU."""
    ctx = StepContext(rule="gpu", source=Path("g.png"), device="cuda:0", allow_cpu_fallback=False)
    truth = periodic(256, 256)
    hole = disc(256, 256, 128, 128, 40)
    out = inpaint(with_object(truth, hole), hole, engine="patch", ctx=ctx)
    assert psnr(out, truth, hole) > 35
    assert np.array_equal(out[~hole], truth[~hole])


def test_separable_descriptors_equal_the_basis_projection_of_every_patch() -> None:
    """The fast 1-D passes give the same descriptors as projecting each patch on `dct_basis`."""
    from retouchd.inpaint.descriptors import dct_basis, separable_descriptors

    feat = torch.rand(5, 23, 31, generator=torch.Generator().manual_seed(3)) * 255
    fast = separable_descriptors(feat, 7, 6, 1)
    patches = torch.nn.functional.unfold(feat[None], 7)[0]  # (C·49) × (17·25)
    slow = (dct_basis(5, 7, 6, 1).T @ patches).reshape(-1, 17, 25)
    assert fast.shape == slow.shape == (36, 17, 25)
    torch.testing.assert_close(fast, slow, atol=2e-3, rtol=1e-5)
