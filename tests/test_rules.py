"""Rule files: validation with the file, rule and key named; ordering; matching; `rules check`."""

from __future__ import annotations

from pathlib import Path

import pytest

from retouchd import steps as step_registry
from retouchd.exceptions import RuleError
from retouchd.rules import default_rule_file, load_rules

from conftest import cli


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text(text)
    return path


def test_shipped_rule_files_load() -> None:
    """rules/default.toml and rules/examples.toml are valid."""
    default = load_rules([default_rule_file()])
    assert [r.name for r in default.rules] == ["upscale"]
    examples = load_rules([Path(__file__).parents[1] / "rules" / "examples.toml"])
    assert len(examples.rules) >= 3


@pytest.mark.parametrize(("text", "needle"), [
    ('[[rule]]\nname="a"\ninbox="a"\nsteps=[{op="upscale", scael=2}]\n',
     "rule 'a': 'steps': step 1 (upscale): 'scael': unknown key"),
    ('[[rule]]\nname="a"\ninbox="a"\nsteps=[{op="sharpen"}]\n', "unknown op 'sharpen'"),
    ('[[rule]]\nname="a"\ninbox="a"\nstep=[{op="upscale"}]\n', "'step': unknown key; did you mean 'steps'?"),
    ('[[rule]]\nname="a"\ninbox="a"\nmask="sidecar"\nsteps=[{op="remove_objects"}]\n',
     "'mask': unknown key; 'mask' is an option of the remove_objects step: put it in the step's table, "
     'e.g. steps = [{ op = "remove_objects", mask = "sidecar" }]'),
    ('[[rule]]\nname="a"\ninbox="a"\nwhen="auto"\nsteps=[{op="remove_text"}]\n',
     'option of the remove_text step: put it in the step\'s table, '
     'e.g. steps = [{ op = "remove_text", when = "auto" }]'),
    ('[[rule]]\nname="a"\ninbox="a"\nsteps=[{op="upscale", scale=9}]\n',
     "'scale': 9 is out of range; it must be 1 < scale ≤ 8"),
    ('[[rule]]\nname="a b"\ninbox="a"\nsteps=[{op="upscale"}]\n', "'name'"),
    ('[[rule]]\nname="a"\ninbox="../x"\nsteps=[{op="upscale"}]\n', "'..'"),
    ('[[rule]]\nname="a"\ninbox="a"\nsteps=[]\n', "'steps'"),
    ('[rules]\nname="a"\n', "unknown top-level key"),
    ('[[rule]\n', "not valid TOML"),
])
def test_invalid_rules_are_named(tmp_path: Path, text: str, needle: str) -> None:
    """Each mistake is reported with the file and what is wrong."""
    path = _write(tmp_path, text)
    with pytest.raises(RuleError) as info:
        load_rules([path])
    assert str(path) in str(info.value) and needle in str(info.value)


def test_duplicate_names_and_overlapping_inboxes(tmp_path: Path) -> None:
    """Rule names are unique and inboxes may not overlap."""
    dup = _write(tmp_path, '[[rule]]\nname="a"\ninbox="a"\nsteps=[{op="upscale"}]\n'
                           '[[rule]]\nname="a"\ninbox="b"\nsteps=[{op="upscale"}]\n')
    with pytest.raises(RuleError, match="defined twice"):
        load_rules([dup])
    nested = _write(tmp_path, '[[rule]]\nname="a"\ninbox="a"\nsteps=[{op="upscale"}]\n'
                              '[[rule]]\nname="b"\ninbox="a/b"\nsteps=[{op="upscale"}]\n')
    with pytest.raises(RuleError, match="overlapping"):
        load_rules([nested])


def test_removal_after_upscale_needs_permission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A removal step after `upscale` is rejected unless allow_upscale_first = true."""
    monkeypatch.setitem(step_registry.REGISTRY, "fake_removal", "tests_support.fake_steps:FakeRemoval")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    body = 'name="a"\ninbox="a"\nsteps=[{op="upscale"}, {op="fake_removal"}]\n'
    with pytest.raises(RuleError, match="clean first, then enlarge"):
        load_rules([_write(tmp_path, "[[rule]]\n" + body)])
    ok = load_rules([_write(tmp_path, "[[rule]]\n" + body + "allow_upscale_first = true\n")])
    assert [s.op for s in ok.rules[0].steps] == ["upscale", "fake_removal"]


def test_matching_is_case_insensitive(tmp_path: Path) -> None:
    """Globs match names regardless of case."""
    text = '[[rule]]\nname="a"\ninbox="a"\nmatch=["*.jpg"]\nsteps=[{op="upscale"}]\n'
    rule = load_rules([_write(tmp_path, text)]).rules[0]
    assert rule.matches("IMG_0001.JPG") and rule.matches("x.jpg") and not rule.matches("x.png")


def test_rules_check_cli(root: Path) -> None:
    """`rules check` lists the rules and says which rule and steps each path would get."""
    inbox = root / "inbox" / "upscale"
    result = cli("rules", "check", "--root", str(root), str(inbox / "a.JPG"), str(inbox / "a.jpg.part"),
                 str(inbox / "notes.txt"), str(root / "elsewhere.png"))
    out = result.stdout
    assert "rules OK" in out
    assert f"{inbox / 'a.JPG'}: rule 'upscale': upscale(scale=2.0, model=" in out
    assert "a.jpg.part: ignored" in out
    assert "notes.txt: rule 'upscale' does not match it" in out
    assert "elsewhere.png: no rule" in out
    assert result.returncode == 1
    bad = root / "bad.toml"
    bad.write_text('[[rule]]\nname="a"\ninbox="a"\nsteps=[{op="nope"}]\n')
    result = cli("rules", "check", "--root", str(root), str(bad))
    assert result.returncode == 2 and "unknown op 'nope'" in result.stderr


def test_rules_check_refuses_what_run_refuses_and_shows_output_details(root: Path) -> None:
    """`rules check` runs the same start-up checks as `run` (lama without engines.lama fails both, exit 2) and
    shows each rule's output format, quality, suffix, max_attempts and reprocess."""
    lama = root / "lama.toml"
    lama.write_text('[[rule]]\nname="obj"\ninbox="obj"\nsteps=[{op="remove_objects", mask="sidecar", '
                    'engine="lama"}]\n')
    checked = cli("rules", "check", "--root", str(root), str(lama))
    ran = cli("run", "--once", "--root", str(root), "--rules", str(lama))
    assert checked.returncode == ran.returncode == 2
    assert "engines.lama" in checked.stderr and "engines.lama" in ran.stderr
    assert checked.stderr.startswith("retouchd: rule 'obj', step remove_objects:")
    assert "rules NOT OK" in checked.stdout
    shop = root / "shop.toml"
    shop.write_text('[[rule]]\nname="shop"\ninbox="shop"\nsteps=[{op="upscale", scale=3}]\nmax_attempts = 5\n'
                    'reprocess = true\noutput = { format = "jpeg", quality = 95, suffix = "_x3" }\n')
    result = cli("rules", "check", "--root", str(root), str(shop))
    assert result.returncode == 0, result.stderr
    assert ("output jpeg; quality 95; suffix '_x3'; max_attempts 5; reprocess: every arrival"
            in result.stdout)
