"""Thrash: a scripted A/B/A/B sequence on a fake device raises one Thrashing event; the fixes
the planner offers work when applied; the one planner serves check_budget."""

from __future__ import annotations

import pytest

from vramdeck.gui.bridge_records import budget_report
from vramdeck.manager import ModelLoaded
from vramdeck.manager.config import GIB, InferenceConfig
from vramdeck.manager.events import Event, ModelEvicted, RemovalReason, Thrashing
from vramdeck.manager.thrash import FixKind, ThrashWatch

AB = """
models:
  a: {options: {big: {model_id: a-big, vram_gb: 4}, small: {model_id: a-small, vram_gb: 2}}}
  b: {options: {m: {model_id: b, vram_gb: 4}}}
  c: {options: {m: {model_id: c, vram_gb: 1}}}
inference: {offload_threshold: 0.9, memory_budget_gb: 6, thrash_reloads: 2, thrash_window_s: 60}
"""


async def test_a_b_a_b_raises_one_thrashing_event_with_the_seconds_lost(make_manager):
    m, _, _ = make_manager(AB)
    warnings: list[Thrashing] = []
    loads: list[ModelLoaded] = []
    m.events.subscribe(warnings.append, Thrashing)
    m.events.subscribe(loads.append, ModelLoaded)
    for task in ["a", "b", "a", "b", "a", "b"]:
        await m.load_model(task)  # each load evicts the other: 4 + 4 > 6
    assert warnings == []  # a reloaded twice, b once: not more than 2 yet
    await m.load_model("a")  # a's third reload
    (warning,) = warnings
    assert warning.tasks == ("a", "b")
    assert warning.reloads == 5 and warning.window_s == 60
    reloads = loads[2:]  # every load after the first of each is a reload
    assert warning.seconds_lost == pytest.approx(sum(e.duration_s for e in reloads))
    await m.load_model("b")
    assert len(warnings) == 1  # the count started again


def test_reloads_outside_the_window_and_user_evictions_do_not_count() -> None:
    seen: list[Event] = []
    settings = InferenceConfig({"thrash_reloads": 1, "thrash_window_s": 10})
    loading: set[str] = set()
    watch = ThrashWatch(seen.append, lambda: settings, lambda: loading)

    def cycle(at: float, cause: RemovalReason = RemovalReason.ROOM) -> None:
        common = {"option": "m", "model_id": "x", "device": "cuda:0"}
        loading.add("b")  # b's load is in flight when a is pushed out
        watch.observe(ModelEvicted(task="a", freed_bytes=1, cause=cause, reason="", duration_s=0,
                                   at=at, **common))  # fmt: skip
        loading.discard("b")
        watch.observe(ModelLoaded(task="b", measured_bytes=1, estimated_bytes=1, duration_s=1,
                                  at=at, **common))  # fmt: skip
        watch.observe(ModelLoaded(task="a", measured_bytes=1, estimated_bytes=1, duration_s=2,
                                  at=at + 1, **common))  # fmt: skip

    cycle(0)
    cycle(20)  # a's second reload, but 20 s after the first: outside the 10 s window
    cycle(40, RemovalReason.EVICT)  # the user evicted it: no push
    assert seen == []
    cycle(45)
    assert seen == []  # one reload in the window: 21 s is out of it
    cycle(50)
    (warning,) = seen
    assert isinstance(warning, Thrashing) and warning.tasks == ("a", "b") and warning.reloads == 2
    assert warning.seconds_lost == 4.0 and watch.load_s("a", "m") == 2


async def test_the_fixes_pin_raise_the_budget_or_switch_and_each_works(make_manager):
    m, _, _ = make_manager(AB)
    fixes = m.thrash_fixes(("a", "b"))
    assert [(f.kind, f.task, f.option) for f in fixes] == [
        (FixKind.PIN, "a", None),
        (FixKind.PIN, "b", None),
        (FixKind.RAISE_BUDGET, "a", None),
        (FixKind.SWITCH, "a", "small"),
    ]
    raised = fixes[2]
    assert raised.budget_bytes == 8 * GIB
    assert raised.summary == "raise the memory budget to 8.00 GiB so a and b fit together"
    assert fixes[3].summary == "switch a to small (2.00 GiB): a and b then fit"

    m.set_memory_budget(raised.budget_bytes)
    assert m.inference_config.memory_budget_bytes == 8 * GIB
    await m.load_model("a")
    await m.load_model("b")
    assert set(m.loaded_models) == {"a", "b"}
    assert m.preview_load("c").evictions  # 8 GiB are full: c would evict

    m.set_memory_budget(6 * GIB)
    await m.unload_all()
    await m.set_selected_model("a", "small")
    await m.load_model("a")
    await m.load_model("b")
    assert set(m.loaded_models) == {"a", "b"}
    m.set_pinned("a", True)
    assert [f.kind for f in m.thrash_fixes(["a", "b"])] == [FixKind.PIN]  # b; they fit now


async def test_no_budget_fix_where_the_device_itself_is_too_small(make_manager):
    m, _, _ = make_manager(AB, other_gb={"cuda:0": 3})
    kinds = [f.kind for f in m.thrash_fixes(["a", "b"])]
    assert FixKind.RAISE_BUDGET not in kinds  # 9 GiB limit less 3 GiB of others < 8 GiB


async def test_set_memory_budget_refuses_what_is_not_a_byte_count(make_manager):
    m, _, _ = make_manager(AB)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive whole number of bytes"):
            m.set_memory_budget(bad)
    m.set_memory_budget(None)
    assert m.inference_config.memory_budget_gb is None


async def test_check_budget_counts_other_processes_and_says_what_it_skipped(make_manager):
    m, _, _ = make_manager(
        """
        models:
          local: {options: {m: {model_id: local, vram_gb: 3}}}
          remote: {options: {m: {model_id: gpt-x, framework: external_api, provider: openai,
                                 requires_api_key: true, api_key_env: VRAMDECK_TEST_UNSET_KEY}}}
        inference: {offload_threshold: 0.5}
        """,
        other_gb={"cuda:0": 3},
    )
    report = m.validate_memory_budget()
    cuda = report["devices"]["cuda:0"]
    assert cuda["others_gb"] == pytest.approx(3) and cuda["budget_gb"] == pytest.approx(2)
    assert report["max_allowed_gb"] == pytest.approx(2) and report["valid"] is False
    assert "VRAMDECK_TEST_UNSET_KEY is not set" in report["skipped"]["remote"]
    panel = budget_report(m.check_budget(), at=0.0)
    assert panel.skipped == report["skipped"]
    (plan,) = [p for p in panel.plans if p.device == "cuda:0"]
    assert plan.others == 3 * GIB and plan.budget == 2 * GIB and not panel.valid
