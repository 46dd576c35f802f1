"""The ncnn CPU backend: the same output as the torch modules on the same weights, and no torch import."""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pytest
import torch

from retouchd.exceptions import ModelError
from retouchd.models import ncnnrun, rrdbnet, srmd
from retouchd.models.registry import SRNet, choose_backend, load_bundled
from retouchd.tiling import CPU_ACTIVATION_BUDGET, MODEL_ALLOWANCE, auto_tile, tiled_upscale
from retouchd.typing import RGBImage


@functools.cache
def nets(name: str) -> tuple[SRNet, SRNet]:
    return load_bundled(name, 4), load_bundled(name, 4, backend="ncnn", threads=1)


def photo_like(height: int, width: int, seed: int = 0) -> RGBImage:
    """Smooth gradients, an edge and mild noise: enough structure to exercise every channel."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([xx / width * 200 + 20, yy / height * 180 + 40, 128 + 60 * np.sin(xx / 5) * (yy > height / 2)], -1)
    return np.clip(rgb + rng.normal(0, 6, rgb.shape), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


@pytest.mark.parametrize(("name", "size", "tile"), [("fast", (30, 44), 32), ("anime", (30, 44), 32),
                                                    ("photo", (20, 40), 32)])
def test_ncnn_matches_torch_through_the_tiler(name: str, size: tuple[int, int], tile: int) -> None:
    """Every bundled model, tiled with border pre-padding, gives torch's output to > 45 dB (uint8)."""
    torch_net, ncnn_net = nets(name)
    assert ncnn_net.backend == "ncnn" and torch_net.backend == "torch"
    assert ncnn_net.receptive_radius == torch_net.receptive_radius
    image = photo_like(*size)
    torch.set_num_threads(1)
    with torch.inference_mode():
        reference = tiled_upscale(torch_net.module, image, 4, tile=tile, tile_pad=torch_net.receptive_radius,
                                  pre_pad=2).image
    result = tiled_upscale(ncnn_net.module, image, 4, tile=tile, tile_pad=ncnn_net.receptive_radius, pre_pad=2)
    assert result.image.shape == reference.shape == (size[0] * 4, size[1] * 4, 3)
    assert psnr(result.image, reference) > 45
    assert float(result.image.std()) > 20  # a real picture, not a flat field that would match anything


def test_torch_tensors_in_give_torch_tensors_out() -> None:
    """Called like the torch module (B×3×h×w tensor, batch of 2), it answers with a tensor of the same layout."""
    torch_net, ncnn_net = nets("anime")
    x = torch.rand(2, 3, 12, 10)
    with torch.inference_mode():
        expected = torch_net.module(x)
    got = ncnn_net.module(x)
    assert isinstance(got, torch.Tensor) and got.shape == (2, 3, 48, 40)
    assert float((got - expected).abs().max()) < 1e-4


def test_srmd_takes_all_channels_or_rgb_with_a_code() -> None:
    """SRMD gets RGB plus its code folded in, or all 18 channels as they are: the same interior result;
    another code changes the output."""
    _torch_net, ncnn_net = nets("fast")
    module = ncnn_net.module
    assert module.in_channels == 18 and module.code == srmd.DEGRADATION_CODE
    rgb = np.random.default_rng(1).random((1, 3, 40, 40), dtype=np.float32)
    planes = np.broadcast_to(np.asarray(module.code, np.float32)[None, :, None, None], (1, 15, 40, 40))
    folded = module(rgb)
    full = module(np.concatenate([rgb, planes], axis=1))
    inner = slice(4 * 13, -4 * 13)  # beyond the receptive radius the edge handling no longer matters
    assert np.abs(folded - full)[..., inner, inner].max() < 1e-4
    module.code = tuple(0.5 * v for v in srmd.DEGRADATION_CODE)
    try:
        other = module(rgb)
    finally:
        module.code = srmd.DEGRADATION_CODE
    assert np.abs(other - folded)[..., inner, inner].mean() > 1e-3
    with pytest.raises(ModelError, match="18 channels"):
        module(np.zeros((1, 5, 8, 8), np.float32))


def test_copied_constants_agree_with_the_torch_modules() -> None:
    """ncnnrun repeats a few torch-side constants so that it need not import torch: they must not drift."""
    assert ncnnrun.SRMD_CODE == srmd.DEGRADATION_CODE
    assert ncnnrun.RECEPTIVE_RADIUS == {"srmd": srmd.RECEPTIVE_RADIUS, "rrdbnet": rrdbnet.RECEPTIVE_RADIUS}


@pytest.mark.parametrize(("name", "side"), [("fast", 192), ("anime", 192)])
def test_memory_per_pixel_bounds_one_extraction(name: str, side: int) -> None:
    """The bytes per pixel that size the auto tile cover what an extraction really adds to RSS."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent (this test process) across exec.
    code = (
        "import re, numpy as np\n"
        "from retouchd.models.registry import load_bundled\n"
        "def peak(): return int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]) * 1024\n"
        f"net = load_bundled({name!r}, 4, backend='ncnn', threads=1)\n"
        "net.module(np.zeros((1, 3, 16, 16), np.float32))\n"
        "before = peak()\n"
        f"net.module(np.random.default_rng(0).random((1, 3, {side}, {side}), dtype=np.float32))\n"
        "print(peak() - before)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    grown = int(result.stdout.strip())
    family = nets(name)[1].family
    assert grown <= ncnnrun.BYTES_PER_PIXEL[family] * side * side
    assert grown >= 0.5 * ncnnrun.BYTES_PER_PIXEL[family] * side * side  # the estimate is not wildly high


def test_backend_choice() -> None:
    """CPU → ncnn when installed (auto), CUDA → torch always; an unknown name is refused."""
    assert choose_backend("cpu") == "ncnn"
    assert choose_backend("cpu", "torch") == "torch"
    assert choose_backend("cuda:0") == "torch"
    assert choose_backend("cuda:1", "ncnn") == "torch"
    with pytest.raises(ModelError, match="unknown backend"):
        choose_backend("cpu", "vulkan")


def test_cpu_upscale_step_runs_ncnn_without_importing_torch() -> None:
    """A CPU `fast` ×2 job goes through ncnn and never imports torch (1.5 s of start-up per worker)."""
    code = (
        "import sys, numpy as np\n"
        "from retouchd.steps.base import StepContext\n"
        "from retouchd.steps.upscale import UpscaleOptions, UpscaleStep\n"
        "from retouchd.typing import Frame\n"
        "from pathlib import Path\n"
        "ctx = StepContext(rule='r', source=Path('x.png'), cpu_threads=1)\n"
        "rgb = np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)\n"
        "out = UpscaleStep(UpscaleOptions(scale=2, model='fast')).run(Frame(rgb), ctx)\n"
        "print(out.frame.rgb.shape, out.metrics['backend'], 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(40, 48, 3) ncnn False"


@pytest.mark.parametrize("family", ["srmd", "srvgg", "rrdbnet"])
def test_auto_tile_with_its_pad_fits_the_cpu_budget(family: str) -> None:
    """The auto tile plus its context on both sides stays within the CPU activation budget."""
    pad = ncnnrun.RECEPTIVE_RADIUS.get(family, 18)
    tile = auto_tile(ncnnrun.BYTES_PER_PIXEL[family], pad=pad)
    assert tile % 16 == 0 and tile >= 32
    assert (tile + 2 * pad) ** 2 * ncnnrun.BYTES_PER_PIXEL[family] <= CPU_ACTIVATION_BUDGET
    assert (tile + 16 + 2 * pad) ** 2 * ncnnrun.BYTES_PER_PIXEL[family] > CPU_ACTIVATION_BUDGET * 0.8


def _peak_growth(code: str) -> list[int]:
    """Run `code` in a fresh interpreter with `peak()` (VmHWM bytes) and `rss()` defined; its printed ints."""
    prelude = (
        "import re, ncnn, numpy as np\n"
        "from retouchd.models.registry import load_bundled\n"
        "def peak(): return int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]) * 1024\n"
        "def rss(): return int(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1]) * 1024\n"
    )
    result = subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stderr
    return [int(v) for v in result.stdout.split()]


def test_tile_loop_memory_does_not_grow_tile_after_tile() -> None:
    """A loop of extractions of a few sizes (as a grid's edge tiles are) peaks no higher than its worst tile
    alone (each measured in a fresh process): every block goes back after each tile. Before, ncnn's own
    pools and glibc's heap kept them: this loop reached 205 MB against 138 MB for its worst tile, and a 1 MP
    `fast` ×4 tile loop 893 MB against ~400 MB for one tile."""
    sides = [128, 144, 136, 152]
    run = (
        "net = load_bundled('fast', 4, backend='ncnn', threads=2)\n"
        "net.module(np.zeros((1, 3, 16, 16), np.float32))\n"
        "base = peak()\n"
        "for side in {}:\n"
        "    net.module(np.random.default_rng(side).random((1, 3, side, side), dtype=np.float32))\n"
        "print(peak() - base)\n"
    )
    alone = max(_peak_growth(run.format([side]))[0] for side in sides)
    (loop,) = _peak_growth(run.format(sides))
    assert loop <= alone * 1.05 + 4 * 2**20, (alone, loop)


def test_a_long_loop_of_mixed_tiles_peaks_at_its_worst_tile() -> None:
    """The pools are kept between extractions but never hold more than one extraction's blocks: larger
    tiles, much smaller ones and slightly smaller ones in any order peak no higher than the largest alone."""
    sides = [100, 120, 152, 136, 144, 100, 148, 152, 128, 140]
    run = (
        "net = load_bundled('fast', 4, backend='ncnn', threads=2)\n"
        "net.module(np.zeros((1, 3, 16, 16), np.float32))\n"
        "base = peak()\n"
        "for i, side in enumerate({}):\n"
        "    net.module(np.random.default_rng(i).random((1, 3, side, side), dtype=np.float32))\n"
        "print(peak() - base)\n"
    )
    (alone,) = _peak_growth(run.format([152]))
    (loop,) = _peak_growth(run.format(sides))
    assert loop <= alone * 1.05 + 4 * 2**20, (alone, loop)


def test_tiles_of_one_size_reuse_the_pools() -> None:
    """A second tile of the same size maps (almost) no new memory: emptying the pools after every tile cost
    7× the page faults and 15–20 % more CPU time than plain ncnn."""
    code = (
        "import resource\n"
        "net = load_bundled('anime', 4, backend='ncnn', threads=1)\n"
        "net.module(np.zeros((1, 3, 16, 16), np.float32))\n"
        "for seed in range(2):\n"
        "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    out = net.module(np.random.default_rng(seed).random((1, 3, 128, 120), dtype=np.float32))\n"
        "    del out\n"
        "    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    first, second = _peak_growth(code)
    assert first > 5_000 and second < first / 5, (first, second)


def test_the_pools_are_emptied_when_the_tile_loop_ends_if_they_would_exceed_the_budget() -> None:
    """What a job does after its tiles (refinement, encoding) does not sit on a tile's worth of kept blocks
    unless those and three outputs fit the tile budget: here the budget (lowered) does not hold them."""
    code = (
        "from retouchd import tiling\n"
        "from retouchd.tiling import tiled_upscale\n"
        "tiling.CPU_ACTIVATION_BUDGET = 100 * 2**20\n"
        "net = load_bundled('anime', 4, backend='ncnn', threads=1)\n"
        "net.module(np.zeros((1, 3, 16, 16), np.float32))\n"
        "image = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)\n"
        "before = rss()\n"
        "result = tiled_upscale(net.module, image, 4, tile=256, tile_pad=16, pre_pad=2)\n"
        "print(rss() - before)\n"
    )
    (grown,) = _peak_growth(code)
    assert grown < result_bytes(150, 200) + 24 * 2**20, grown  # one tile's blocks would be ~130 MB


def test_a_small_job_keeps_its_pools_for_the_next_job_within_the_budget() -> None:
    """One-tile jobs back to back: the second maps (almost) no new memory, as plain ncnn's kept pools do
    (emptying them cost ~25 000 page faults and 5–10 % more CPU per 250×140 job); what stays is within the
    estimate the tile budget allows for, and release_held returns it."""
    code = (
        "import resource\n"
        "from retouchd.models import ncnnrun\n"
        "from retouchd.tiling import tiled_upscale\n"
        "net = load_bundled('anime', 4, backend='ncnn', threads=1)\n"
        "net.module(np.zeros((1, 3, 16, 16), np.float32))\n"
        "image = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)\n"
        "before = rss()\n"
        "for _ in range(2):\n"
        "    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "    result = tiled_upscale(net.module, image, 4, tile=256, tile_pad=16, pre_pad=2)\n"
        "    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)\n"
        "print(rss() - before, net.module._pool_pixels * ncnnrun.BYTES_PER_PIXEL['srvgg'])\n"
        "ncnnrun.release_held()\n"
        "print(rss() - before)\n"
    )
    first, second, kept, allowed, released = _peak_growth(code)
    assert first > 5_000 and second < first / 5, (first, second)
    assert 50 * 2**20 < kept <= allowed + result_bytes(150, 200), (kept, allowed)
    assert released < result_bytes(150, 200) + 24 * 2**20, released


def test_a_step_other_than_an_ncnn_upscale_releases_the_kept_pools() -> None:
    """The pipeline empties kept blocks before a lanczos, torch-device or non-upscale step, not before an
    ncnn upscale (which reuses them)."""
    from retouchd.pipeline import _release_kept_pools
    from retouchd.steps import step_class

    def options(raw: dict[str, object]) -> object:
        return step_class(str(raw["op"])).options_model.model_validate(raw)

    module = load_bundled("anime", 4, backend="ncnn", threads=1).module
    keep = options({"op": "upscale", "scale": 4, "model": "anime"})
    for raw, device in (({"op": "upscale", "scale": 2, "model": "lanczos"}, "cpu"),
                        ({"op": "upscale", "scale": 4, "model": "anime"}, "cuda:0")):
        tiled_upscale(module, photo_like(20, 24), 4, tile=32, tile_pad=8)
        _release_kept_pools(keep, "cpu")  # type: ignore[arg-type]
        assert module._pool_pixels > 0
        _release_kept_pools(options(raw), device)  # type: ignore[arg-type]
        assert module._pool_pixels == 0, (raw, device)


def result_bytes(height: int, width: int) -> int:
    return height * 4 * width * 4 * 3


def test_two_models_never_hold_pools_at_once() -> None:
    """Only the module extracting keeps blocks: `fast` then `anime` peaks at the larger of the two alone."""
    run = (
        "nets = {{name: load_bundled(name, 4, backend='ncnn', threads=2) for name in ('fast', 'anime')}}\n"
        "for net in nets.values():\n"
        "    net.module(np.zeros((1, 3, 16, 16), np.float32))\n"
        "base = peak()\n"
        "for name in {}:\n"
        "    nets[name].module(np.random.default_rng(0).random((1, 3, 160, 160), dtype=np.float32))\n"
        "print(peak() - base)\n"
    )
    alone = max(_peak_growth(run.format([name]))[0] for name in ("fast", "anime"))
    (both,) = _peak_growth(run.format(["fast", "anime"]))
    assert both <= alone * 1.05 + 4 * 2**20, (alone, both)


@pytest.mark.parametrize(("name", "family"), [("fast", "srmd"), ("anime", "srvgg"), ("photo", "rrdbnet")])
def test_resident_size_of_a_loaded_network(name: str, family: str) -> None:
    """NET_BYTES covers what loading the network adds to RSS (the auto tile of x4plus is shrunk by it), and
    is not wildly high."""
    code = (
        "before = rss()\n"
        f"net = load_bundled({name!r}, 4, backend='ncnn', threads=1)\n"
        "net.module._network(3)\n"
        "print(rss() - before)\n"
    )
    (grown,) = _peak_growth(code)
    assert 0.25 * ncnnrun.NET_BYTES[family] <= grown <= ncnnrun.NET_BYTES[family], grown


def test_a_large_network_takes_its_excess_from_the_tile_budget() -> None:
    """x4plus on ncnn holds more than MODEL_ALLOWANCE: its auto tile plus that excess fits the CPU budget, so
    a `photo` job stays within output + CPU_ACTIVATION_BUDGET + 200 MB; a small network's tile is unchanged."""
    pad, per_pixel = ncnnrun.RECEPTIVE_RADIUS["rrdbnet"], ncnnrun.BYTES_PER_PIXEL["rrdbnet"]
    resident = ncnnrun.NET_BYTES["rrdbnet"]
    tile = auto_tile(per_pixel, pad=pad, resident=resident)
    assert tile < auto_tile(per_pixel, pad=pad)
    assert (tile + 2 * pad) ** 2 * per_pixel + resident - MODEL_ALLOWANCE <= CPU_ACTIVATION_BUDGET
    srmd_pad = ncnnrun.RECEPTIVE_RADIUS["srmd"]
    assert auto_tile(ncnnrun.BYTES_PER_PIXEL["srmd"], pad=srmd_pad, resident=ncnnrun.NET_BYTES["srmd"]) == auto_tile(
        ncnnrun.BYTES_PER_PIXEL["srmd"], pad=srmd_pad)


def test_an_idle_worker_releases_the_kept_pools() -> None:
    """A worker that waits with no job running empties the kept blocks; a message already waiting does not."""
    import multiprocessing
    import threading

    from retouchd.worker import _wait_for_message

    module = load_bundled("anime", 4, backend="ncnn", threads=1).module
    tiled_upscale(module, photo_like(20, 24), 4, tile=32, tile_pad=8)
    ours, theirs = multiprocessing.Pipe()
    theirs.send(("stop",))
    _wait_for_message(ours, lambda: False, 0.01)
    assert module._pool_pixels > 0
    ours.recv()
    busy = threading.Thread(target=threading.Event().wait, args=(0.3,))
    busy.start()
    _wait_for_message(ours, busy.is_alive, 0.05)  # returns once the job ended and no message came
    assert not busy.is_alive() and module._pool_pixels == 0
