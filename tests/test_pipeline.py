"""One job's work (read → decode → steps → encode): outcomes are an output or a reason, never an exception."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from retouchd.pipeline import Task, run_task

STEPS = [{"op": "upscale", "scale": 2, "model": "lanczos"}]


def _task(tmp_path: Path, source: Path, **over: object) -> Task:
    fields: dict[str, object] = {"rule": "r", "source": str(source), "steps": STEPS, "output": {},
                                 "work_dir": str(tmp_path), "max_input_pixels": 4_000_000}
    fields.update(over)
    return Task(**fields)  # type: ignore[arg-type]


def _seed_images() -> list[bytes]:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    out = []
    for fmt, mode in (("PNG", "RGB"), ("JPEG", "RGB"), ("WEBP", "RGB"), ("TIFF", "RGB"), ("PNG", "RGBA"),
                      ("PNG", "P"), ("GIF", "P")):
        buf = io.BytesIO()
        Image.fromarray(pixels).convert(mode).save(buf, fmt)
        out.append(buf.getvalue())
    return out


SEEDS = _seed_images()


def test_success_writes_a_hashed_temp_output(tmp_path: Path) -> None:
    """A good file gives a fsync'd temp output whose recorded sha256 matches its bytes."""
    source = tmp_path / "a.png"
    source.write_bytes(SEEDS[0])
    result = run_task(_task(tmp_path, source, sha256=hashlib.sha256(SEEDS[0]).hexdigest()))
    assert result.ok and result.tmp_path and result.output_name == "a.png"
    data = Path(result.tmp_path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == result.output_sha256
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (64, 48)
    assert result.steps[0]["op"] == "upscale" and result.steps[0]["metrics"]["width"] == 64


def test_changed_since_queued_is_transient(tmp_path: Path) -> None:
    """Bytes that differ from the hash taken at queue time give a retryable error, not a failure."""
    source = tmp_path / "a.png"
    source.write_bytes(SEEDS[0])
    result = run_task(_task(tmp_path, source, sha256="0" * 64))
    assert not result.ok and not result.permanent and "changed" in (result.error or "")


def test_missing_inbox_is_an_outage_not_a_deletion(tmp_path: Path) -> None:
    """A file missing because its whole inbox is gone (unmounted) is retried; missing alone, it vanished."""
    gone = tmp_path / "share" / "a.png"
    result = run_task(_task(tmp_path, gone, inbox=str(tmp_path / "share")))
    assert not result.ok and not result.permanent and "unavailable" in (result.error or "")
    (tmp_path / "share").mkdir()
    result = run_task(_task(tmp_path, gone, inbox=str(tmp_path / "share")))
    assert not result.ok and result.permanent and result.vanished


def test_symlink_source_is_refused(tmp_path: Path) -> None:
    """A source that is a symlink is not read (O_NOFOLLOW)."""
    target = tmp_path / "t.png"
    target.write_bytes(SEEDS[0])
    (tmp_path / "l.png").symlink_to(target)
    result = run_task(_task(tmp_path, tmp_path / "l.png"))
    assert not result.ok and result.permanent and "symlink" in (result.error or "")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.sampled_from(SEEDS), edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                    max_size=12),
       cut=st.integers(0, 10_000))
def test_fuzz_decode_step_encode(tmp_path: Path, seed: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    """Mutated and truncated real images give either an output or a failed result with a reason."""
    data = bytearray(seed)
    for pos, value in edits:
        data[pos % len(data)] = value
    data = data[: max(1, len(data) - cut % len(data))] if cut % 3 == 0 else data
    source = tmp_path / "f.img"
    source.write_bytes(bytes(data))
    result = run_task(_task(tmp_path, source))
    if result.ok:
        assert result.tmp_path and Path(result.tmp_path).stat().st_size > 0
        Path(result.tmp_path).unlink()
    else:
        assert result.error and result.error_step in ("read", "decode", "upscale", "encode")
        assert result.traceback_id is None, f"unexpected internal error: {result.error}"


def test_sidecar_is_read_beneath_the_inbox_never_through_a_swapped_folder(tmp_path: Path) -> None:
    """A sidecar whose folder was swapped for a symlink to an outside folder is refused: the outside mask
    is never read (SPEC §6.5), and the job fails with a reason naming the sidecar."""
    inbox, outside = tmp_path / "inbox", tmp_path / "outside"
    (inbox / "sub").mkdir(parents=True)
    outside.mkdir()
    Image.new("RGB", (16, 16), "white").save(inbox / "photo.png")
    Image.new("L", (16, 16), 255).save(outside / "photo.mask.png")
    (inbox / "masks").symlink_to(outside, target_is_directory=True)
    steps = [{"op": "remove_objects", "mask": "sidecar"}]
    task = _task(tmp_path, inbox / "photo.png", steps=steps, inbox=str(inbox),
                 sidecar=str(inbox / "masks" / "photo.mask.png"))
    result = run_task(task)
    assert not result.ok and result.permanent
    assert "sidecar mask" in (result.error or "") and "cannot be read safely" in (result.error or "")
    (inbox / "masks").unlink()
    (inbox / "masks").mkdir()
    Image.new("L", (16, 16), 255).save(inbox / "masks" / "photo.mask.png")
    assert run_task(task).ok  # the same layout without the link is processed


def test_task_build_carries_the_rule_variant_and_every_limit(tmp_path: Path) -> None:
    """Task.build (used by the pool and by `process`) takes the variant's steps, the rule's output and
    fallback, and every limit and engine path from the settings."""
    from retouchd.rules import load_rules
    from retouchd.settings import load_settings

    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(
        '[[rule]]\nname = "r"\ninbox = "r"\ncpu_fallback = false\noutput = { format = "png" }\n'
        'steps = [{ op = "upscale", scale = 2, model = "lanczos" }]\n'
        '[[rule.variants]]\nname = "b"\nshare = 0.5\nsteps = [{ op = "upscale", scale = 3, model = "lanczos" }]\n')
    rule = load_rules([rules_file]).by_name("r")
    settings = load_settings(root=tmp_path, env=False)
    settings.limits = settings.limits.model_copy(update={"max_input_pixels": 11, "max_dimension": 12,
                                                         "max_file_bytes": 13, "max_output_pixels": 14})
    settings.engines = {"lama": "/m/lama.pt"}
    task = Task.build(rule, settings, source="/in/a.png", work_dir="/w", device="cuda:1", cpu_threads=3,
                      variant="b", job_id=7, tmp_prefix="h-")
    assert (task.rule, task.source, task.work_dir, task.device, task.cpu_threads) == ("r", "/in/a.png", "/w",
                                                                                      "cuda:1", 3)
    assert task.steps[0]["scale"] == 3 and task.output["format"] == "png" and task.allow_cpu_fallback is False
    assert (task.max_input_pixels, task.max_dimension, task.max_file_bytes, task.max_output_pixels) == (11, 12, 13, 14)
    assert task.engines == {"lama": "/m/lama.pt"} and task.job_id == 7 and task.tmp_prefix == "h-"
    assert Task.build(rule, settings, source="/in/a.png", work_dir="/w", device="cpu", cpu_threads=0).steps[0][
        "scale"] == 2
