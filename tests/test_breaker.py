"""Instance-level conditions pause the instance's chain, never its tasks (the per-instance breaker).

Defect (before): any synchronous 4xx but 409 failed the task after one attempt; with the instance stopped or IAM
still propagating after an apply, every queued task was `failed` within seconds and watermarks froze until an
operator ran `cdc retry`.
"""

from __future__ import annotations

import json

import pytest

from shared.app.planner import plan_tick
from shared.core.config import parse_config
from shared.core.messages import Tick
from shared.core.templates import Templates
from shared.ops import status
from shared.testing.services import FakeServices
from tests.test_chain import INSTANCE, T0, config_doc, content

HOUR_SECONDS = 3600


@pytest.mark.parametrize("condition", ["not running", "not ready", "permission", "quota"])
def test_an_unavailable_instance_pauses_and_resumes_without_failing_or_spending_attempts(
    condition: str, capsys: pytest.CaptureFixture[str]
) -> None:
    svc = FakeServices(parse_config(config_doc()), start=T0.add(hours=3, minutes=10), content=content)
    plan_tick(Tick("t", svc.clock.now(), svc.clock.now()), svc)
    svc.bus.published.clear()
    svc.sqladmin.refuse(INSTANCE, condition, seconds=20 * 60)
    seen: list[dict] = []
    original = svc.state.save_breaker

    def watch(instance: str, record: dict) -> None:
        seen.append(dict(record))
        original(instance, record)

    svc.state.save_breaker = watch  # type: ignore[method-assign]
    svc.drain(INSTANCE, Templates(), max_invocations=200)
    tasks = svc.state.all_tasks()
    assert {t.state for t in tasks} == {"done"}
    assert {t.attempts for t in tasks} == {1}  # the pause spent no attempt
    assert svc.state.breaker(INSTANCE) is None  # closed once an export was accepted
    assert seen and seen[-1]["condition"] == condition and seen[-1]["refusals"] >= 5
    assert svc.clock.monotonic() >= 20 * 60
    logs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    alerts = [e for e in logs if e["message"].startswith("instance paused for long")]
    assert len(alerts) == 1 and alerts[0]["severity"] == "ERROR" and alerts[0]["instance"] == INSTANCE
    assert any(e["message"] == "instance available again; chain resumed" for e in logs)
    assert not [e for e in logs if e["message"].startswith(("export failed for good", "task cannot run"))]


def test_cdc_status_shows_the_pause_while_it_lasts() -> None:
    svc = FakeServices(parse_config(config_doc()), start=T0.add(hours=1, minutes=10), content=content)
    plan_tick(Tick("t", svc.clock.now(), svc.clock.now()), svc)
    svc.bus.published.clear()
    svc.sqladmin.refuse(INSTANCE, "permission", seconds=HOUR_SECONDS * 10)
    svc.drain(INSTANCE, Templates(), max_invocations=1)
    shown = status.collect_status(svc.config, svc.state, clock=svc.clock.now())
    breaker = shown.sources[0].breaker
    assert breaker["condition"] == "permission" and breaker["refusals"] >= 1
    assert "breaker: " in status.format_status(shown) and "permission" in status.format_status(shown)
    assert {t.state for t in svc.state.all_tasks()} <= {"pending", "submitting"}
