"""Live windows first, whoever wrote the task document and whether or not it is a forced re-export."""

from __future__ import annotations

import pendulum

from shared.app.planner import plan_backfill, plan_tick
from shared.core.config import parse_config
from shared.core.messages import Backfill, Tick
from shared.core.templates import Templates
from shared.testing.services import FakeServices
from tests.test_chain import INSTANCE, T0, TABLES, config_doc, content

HOUR = pendulum.duration(hours=1)


def services(hours: float, *, with_start: bool = True) -> FakeServices:
    doc = config_doc()
    if not with_start:  # a fresh deployment: the first tick plans only the latest window
        del doc["sources"][0]["start"]
    return FakeServices(parse_config(doc), start=T0.add(hours=hours, minutes=10), content=content)


def tick(svc: FakeServices) -> None:
    plan_tick(Tick("t", svc.clock.now(), svc.clock.now()), svc)
    svc.bus.published.clear()


def windows_in_export_order(uris: list[str]) -> list[str]:
    return list(dict.fromkeys(uri.rsplit("_", 1)[1][:15] for uri in uris))


def test_a_live_window_a_backfill_created_first_is_promoted_so_the_watermark_moves_at_once() -> None:
    """Defect (before): deploy, then backfill up to the last settled window: the first tick's live window already
    existed at backfill priority, so the watermark and the freshness alert stayed frozen behind the backfill."""
    svc = services(hours=6, with_start=False)
    plan_backfill(Backfill("bf", svc.clock.now(), T0, T0 + HOUR * 6, "shop", TABLES, False, False), svc)
    tick(svc)  # the live window [05:00, 06:00) exists already, at backfill priority
    live = svc.state.get_task(f"shop.{(T0 + HOUR * 5).strftime('%Y%m%dT%H%M%S')}.table.orders")
    assert live.priority == 0 and not live.backfill
    svc.drain(INSTANCE, Templates())
    assert windows_in_export_order(svc.sqladmin.exported)[0] == (T0 + HOUR * 5).strftime("%Y%m%dT%H%M%S")
    first_moves = svc.state.watermark_history()[:2]
    assert {(e["from"], e["to"]) for e in first_moves} == {(T0 + HOUR * 5, T0 + HOUR * 6)}


def test_forced_reexports_of_done_live_windows_go_behind_a_new_live_window() -> None:
    """Defect (before): a forced backfill re-queued done live windows with their old live rank, so they sorted
    before the newest live window."""
    svc = services(hours=3)
    tick(svc)
    svc.drain(INSTANCE, Templates())
    plan_backfill(Backfill("force", svc.clock.now(), T0, T0 + HOUR * 3, "shop", TABLES, True, False), svc)
    svc.bus.published.clear()
    svc.clock.advance(3600)
    tick(svc)  # the new live window [03:00, 04:00)
    exported_before = len(svc.sqladmin.exported)
    svc.drain(INSTANCE, Templates())
    order = windows_in_export_order(svc.sqladmin.exported[exported_before:])
    assert order[0] == (T0 + HOUR * 3).strftime("%Y%m%dT%H%M%S")
    assert {t.state for t in svc.state.all_tasks()} == {"done"}


def ts(hours: int) -> str:
    return (T0 + HOUR * hours).strftime("%Y%m%dT%H%M%S")


def test_a_forced_reexport_of_the_live_window_keeps_its_live_rank() -> None:
    """Priority at claim time. Defect (before): a forced backfill re-queued the live window at backfill rank, so it
    waited behind every older forced window (the freshest data re-exported last)."""
    svc = services(hours=3)
    tick(svc)
    svc.drain(INSTANCE, Templates())
    plan_backfill(Backfill("force", svc.clock.now(), T0, T0 + HOUR * 3, "shop", TABLES, True, False), svc)
    svc.bus.published.clear()
    exported_before = len(svc.sqladmin.exported)
    svc.drain(INSTANCE, Templates())
    assert windows_in_export_order(svc.sqladmin.exported[exported_before:]) == [ts(2), ts(0), ts(1)]


def test_live_windows_go_before_catch_up_and_catch_up_before_backfill_whoever_queued_them() -> None:
    """Priority at claim time: the latest settled window first, then older windows a tick planned (catch-up,
    oldest first), then a backfill's. Defect (before): the rank was frozen when the document was written, so a live
    window a backfill had created waited behind the whole backfill until a tick planned it again, and catch-up
    windows went before the live one."""
    svc = services(hours=6, with_start=False)
    plan_backfill(Backfill("bf", svc.clock.now(), T0, T0 + HOUR * 4, "shop", TABLES, False, False), svc)
    tick(svc)  # a fresh deployment: the tick plans the live window [05:00, 06:00) only
    svc.clock.advance(3600)  # [06:00, 07:00) is live now; no tick planned it yet, a backfill queues it
    plan_backfill(Backfill("bf2", svc.clock.now(), T0 + HOUR * 6, T0 + HOUR * 7, "shop", TABLES, False, False), svc)
    svc.bus.published.clear()
    svc.drain(INSTANCE, Templates())
    order = windows_in_export_order(svc.sqladmin.exported)
    assert order[0] == ts(6)  # live now, although only a backfill queued it
    assert order.index(ts(5)) < order.index(ts(0))  # catch-up (a tick planned it) before the backfill
    assert order[2:] == [ts(0), ts(1), ts(2), ts(3)]
