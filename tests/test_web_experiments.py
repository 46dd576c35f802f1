"""Experiments: a rule splits arrivals between variants by content hash; stats and report show each one."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from retouchd.commands.report import write_report
from retouchd.exceptions import RuleError
from retouchd.rules import load_rules
from retouchd.web.app import create_app

from tests_support.webjobs import Farm

EXPERIMENT = """
[[rule]]
name = "shop"
inbox = "shop"
steps = [{ op = "upscale", scale = 2, model = "lanczos" }]
variants = [
  { name = "lanczos", share = 3 },
  { name = "fast", share = 1, steps = [{ op = "upscale", scale = 2, model = "fast" }] },
]
"""


def test_variants_split_by_content_hash_in_proportion(tmp_path: Path) -> None:
    """Same bytes → same variant, always; over many contents the split follows the shares (3:1)."""
    path = tmp_path / "rules.toml"
    path.write_text(EXPERIMENT)
    rule = load_rules([path]).by_name("shop")
    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(4000)]
    picks = [rule.variant_for(d) for d in digests]
    assert picks == [rule.variant_for(d) for d in digests]
    assert 0.72 < picks.count("lanczos") / len(picks) < 0.78
    assert [s.model for s in rule.steps_for("fast")] == ["fast"]  # type: ignore[attr-defined]
    assert [s.model for s in rule.steps_for("lanczos")] == ["lanczos"]  # type: ignore[attr-defined]
    assert [s.model for s in rule.steps_for(None)] == ["lanczos"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("variants", "message"), [
    ('[{ name = "a", share = 1 }, { name = "a", share = 2 }]', "unique"),
    ('[{ name = "a", share = 0 }]', "greater than 0"),
    ('[{ name = "a", share = 1, steps = [{ op = "upscale", scale = 2 }, { op = "remove_text" }] }]',
     "removal step comes after 'upscale'"),
])
def test_bad_variants_are_refused(tmp_path: Path, variants: str, message: str) -> None:
    """Duplicate names, zero shares and upscale-then-remove (without allow_upscale_first) stop loading."""
    path = tmp_path / "rules.toml"
    path.write_text(f'[[rule]]\nname = "r"\ninbox = "r"\nsteps = [{{ op = "upscale", scale = 2 }}]\n'
                    f"variants = {variants}\n")
    with pytest.raises(RuleError, match=message):
        load_rules([path])


def test_intake_records_the_variant_and_stats_split_by_it(tmp_path: Path) -> None:
    """Each queued job carries its variant; /api/stats and the report give per-variant cost and reject rate."""
    farm = Farm(tmp_path / "root", EXPERIMENT)
    job = farm.queued("shop", "q.png")
    assert job.variant == farm.rules.by_name("shop").variant_for(job.sha256)
    a = [farm.finished("shop", f"a{i}.png", seconds=1.0, variant="lanczos") for i in range(3)]
    b = [farm.finished("shop", f"b{i}.png", seconds=4.0, variant="fast") for i in range(2)]
    app = create_app(farm.settings, farm.rules, farm.store, farm.folders)
    client = TestClient(app, base_url="http://127.0.0.1", headers={"X-CSRF-Token": app.state.web.guard.csrf})
    assert client.post(f"/api/jobs/{a[0].id}/reject", json={"reason": "soft"}).status_code == 200
    stats = client.get("/api/stats").json()
    by_variant = {r["variant"]: r for r in stats["variants"]}
    assert (by_variant["lanczos"]["done"], by_variant["lanczos"]["rejected"]) == (3, 1)
    assert by_variant["lanczos"]["reject_rate"] == pytest.approx(1 / 3)
    assert by_variant["lanczos"]["device_seconds_per_approved"] == pytest.approx(3.0 / 2)
    assert by_variant["fast"]["device_seconds_per_image"] == pytest.approx(4.0)
    assert by_variant["fast"]["reject_rate"] == 0
    assert stats["rules"][0]["done"] == 5 and len(b) == 2
    out = tmp_path / "report.html"
    write_report(farm.settings, farm.store, out, since=None, since_text=None, rules=[], outcomes=[], limit=50,
                 box=128, external=False)
    html = out.read_text()
    table = html[html.index("id=review-stats"):html.index("</table>", html.index("id=review-stats"))]
    assert "<td>fast</td><td>2</td><td>2</td><td>0</td><td>0.0 %</td><td>4.00</td><td>4.00</td>" in table
    assert "<td>lanczos</td><td>3</td><td>2</td><td>1</td><td>33.3 %</td>" in table
