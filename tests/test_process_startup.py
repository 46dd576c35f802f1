"""`retouchd process` and `rules check` need no database: they import neither SQLAlchemy, Alembic nor the
store; a CPU network rule does not import torch either."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def cli_code(watched: tuple[str, ...]) -> str:
    """A child's program: run the CLI with its arguments, then print the exit code and which of `watched`
    got imported."""
    return f"""
import json, sys
from retouchd.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print(json.dumps({{"code": code, "loaded": sorted(m for m in {watched!r} if m in sys.modules)}}))
"""


CODE = cli_code(("sqlalchemy", "alembic", "retouchd.store", "retouchd.pool", "torch", "watchdog", "retouchd.daemon",
                 "rich", "pillow_heif", "PIL.TiffImagePlugin"))


@pytest.mark.parametrize("model", ["lanczos", "fast"])
def test_process_imports_no_store_and_no_torch(tmp_path: Path, model: str) -> None:
    """A lanczos and a `fast` (ncnn on the CPU) rule run with none of the heavy modules loaded; a PNG input
    loads only Pillow's first plugins (not pillow_heif and the other formats'), logging no rich."""
    rules = tmp_path / "rules.toml"
    step = f'{{ op = "upscale", scale = 2, model = "{model}" }}'
    rules.write_text(f'[[rule]]\nname = "r"\ninbox = "r"\nsteps = [{step}]\n')
    source = tmp_path / "in.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(source)
    command = [sys.executable, "-c", CODE, "process", str(source), "--rule", "r", "--out", str(tmp_path / "out"),
               "--rules", str(rules), "--root", str(tmp_path / "root"), "--log-level", "warning"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                            env={"RETOUCHD_WORKERS__DEVICES": "cpu", "PATH": "/usr/bin:/bin",
                                 "PYTHONPATH": ":".join(sys.path)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "loaded": []}
    with Image.open(tmp_path / "out" / "in.png") as out:
        assert out.size == (64, 48)


def test_rules_check_imports_no_store_and_no_daemon(tmp_path: Path) -> None:
    """`rules check` validates rules and shows folders without loading the daemon, the store or the watcher."""
    command = [sys.executable, "-c", CODE, "rules", "check", "--root", str(tmp_path / "root"), "--log-level", "warning"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)})
    assert result.returncode == 0, result.stderr
    assert "rules OK" in result.stdout and str(tmp_path / "root" / "inbox" / "upscale") in result.stdout
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "loaded": []}


def test_passive_openmp_is_a_default_not_an_override() -> None:
    """Workers and `process` get OMP_WAIT_POLICY=PASSIVE and OpenCV's pool without its busy wait unless the
    environment already says otherwise."""
    code = (
        "import os\n"
        "from retouchd.devices import prefer_passive_openmp\n"
        "prefer_passive_openmp()\n"
        "print(os.environ['OMP_WAIT_POLICY'], os.environ['OPENCV_THREAD_POOL_ACTIVE_WAIT_WORKER'],\n"
        "      os.environ['OPENCV_THREAD_POOL_ACTIVE_WAIT_MAIN'])\n"
    )
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)}
    chosen = {"OMP_WAIT_POLICY": "ACTIVE", "OPENCV_THREAD_POOL_ACTIVE_WAIT_WORKER": "2000",
              "OPENCV_THREAD_POOL_ACTIVE_WAIT_MAIN": "10000"}
    for env, expected in ((base, "PASSIVE 0 0"), ({**base, **chosen}, "ACTIVE 2000 10000")):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                                check=True, env=env)
        assert result.stdout.strip() == expected


IMAGE_STACK = ("numpy", "PIL", "cv2", "torch", "onnxruntime", "retouchd.images", "retouchd.pipeline",
               "retouchd.steps.upscale", "retouchd.steps.remove_text", "retouchd.steps.remove_objects", "rich")
RUN_CODE = cli_code(IMAGE_STACK)


def test_run_once_parent_imports_no_image_stack(tmp_path: Path) -> None:
    """`run --once` on a lanczos rule processes the files while the daemon's own process imports neither
    numpy, Pillow, OpenCV, torch nor a step module: those load in the worker only. Nor rich (JSON logs)."""
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "r"\ninbox = "r"\nsteps = [{ op = "upscale", scale = 2, model = "lanczos" }]\n')
    inbox = tmp_path / "root" / "inbox" / "r"
    inbox.mkdir(parents=True)
    for seed in range(2):
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(
            inbox / f"in{seed}.png")
    command = [sys.executable, "-c", RUN_CODE, "run", "--once", "--rules", str(rules), "--root", str(tmp_path / "root"),
               "--log-level", "warning"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False,
                            env={"RETOUCHD_WORKERS__DEVICES": "cpu", "RETOUCHD_WATCH__SETTLE_TIME": "0",
                                 "PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"code": 0, "loaded": []}
    for seed in range(2):
        with Image.open(tmp_path / "root" / "outbox" / "r" / f"in{seed}.png") as out:
            assert out.size == (64, 48)


def test_rule_validation_imports_no_image_stack() -> None:
    """Validating every built-in op's options (the shipped rules, plus regions, engines and a bad value) and
    their start-up checks for a lanczos rule need pydantic only."""
    code = (
        "import json, sys\n"
        "from pydantic import ValidationError\n"
        "from retouchd.rules import Rule, load_rules\n"
        "from retouchd.steps import preflight\n"
        "rules = load_rules()\n"
        "rule = Rule.model_validate({'name': 'x', 'inbox': 'x', 'steps': [\n"
        "    {'op': 'remove_objects', 'regions': [[0, 0, '10%', 5]], 'engine': 'telea'},\n"
        "    {'op': 'remove_text', 'when': 'auto', 'regions': [[0, '85%', '100%', '15%']]},\n"
        "    {'op': 'upscale', 'scale': 2, 'model': 'lanczos', 'tile': 64}]})\n"
        "preflight(rule.steps[-1], {})\n"
        "try:\n"
        "    Rule.model_validate({'name': 'y', 'inbox': 'y', 'steps': [{'op': 'upscale', 'tile': 8}]})\n"
        "except ValidationError as exc:\n"
        "    bad = 'at least 32 pixels' in str(exc)\n"
        "after = Rule.model_validate({'name': 'z', 'inbox': 'z', 'allow_upscale_first': True, 'steps': [\n"
        "    {'op': 'upscale'}, {'op': 'remove_objects', 'mask': 'sidecar'}]}).removal_after_upscale()\n"
        f"heavy = {IMAGE_STACK!r}\n"
        "print(json.dumps({'rules': len(rules.rules), 'bad': bad, 'after': after,\n"
        "                  'loaded': sorted(m for m in heavy if m in sys.modules)}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["rules"] > 0 and report["bad"] is True and report["after"] is True
    assert report["loaded"] == []


def test_structlog_loads_rich_only_for_a_console_renderer() -> None:
    """JSON logging (the daemon, its workers) never imports rich; a console renderer still gets structlog's rich
    tracebacks, as when structlog was imported with rich."""
    code = (
        "import sys\n"
        "from retouchd.logging import configure_logging\n"
        "import retouchd.daemon, retouchd.worker, retouchd.pipeline, structlog\n"
        "configure_logging('json')\n"
        "json_rich = 'rich' in sys.modules\n"
        "configure_logging('console')\n"
        "renderer = structlog.get_config()['processors'][-1]\n"
        "print(json_rich, type(renderer._exception_formatter).__name__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)})
    assert result.stdout.split() == ["False", "RichTracebackFormatter"]
