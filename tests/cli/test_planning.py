"""The one planner (vramdeck.manager.planning): what it places, what it skips and why, and how it
counts memory that other processes hold."""

from __future__ import annotations

import pytest

from tests.fakes import FakeProbe
from vramdeck.manager.config import GIB, parse_config
from vramdeck.manager.loaders import LoaderRegistry, builtin_loaders
from vramdeck.manager.planning import Planner, cannot_load_reason, held_bytes, validate_selection

#: A GPU task with three options, and an API task with a keyed, an unknown and a keyless API.
CONFIG = """\
models:
  chat:
    selected: big
    options:
      big: {model_id: org/big, vram_gb: 6}
      small: {model_id: org/small, vram_gb: 2}
      served: {model_id: org/served, framework: nosuch, vram_gb: 1}
  assistant:
    selected: keyed
    options:
      keyed: {model_id: claude-x, framework: external_api, provider: anthropic, requires_api_key: true}
      unknown: {model_id: m, framework: external_api, provider: acme}
      local: {model_id: l, framework: external_api, provider: acme, api_endpoint: "http://127.0.0.1:9/v1"}
  vision:
    selected: a
    options:
      a: {model_id: x/a, vram_gb: 3}
inference:
  offload_threshold: 0.9
"""


def planner_for(
    text: str, devices: dict[str, float], other_gb: dict[str, float] | None = None, **kw
) -> Planner:
    _, tasks, inference = parse_config(text)
    registry = LoaderRegistry(builtin_loaders())
    for task in tasks.values():
        for option in task.options.values():
            option.unavailable_reason = registry.unavailable_reason(option)
    probe = FakeProbe(devices, other_gb=other_gb)
    readings = {d: probe.read(d) for d in probe.devices()}
    return Planner.from_tasks(tasks, readings, inference, lambda option, device: None, **kw)


@pytest.fixture(autouse=True)
def _no_anthropic_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


def test_what_cannot_load_here_is_skipped_with_the_reason():
    planner = planner_for(CONFIG, {"cuda:0": 10, "cpu": 64})
    reasons = {
        (t, o): c.skip_reason for t, options in planner.choices.items() for o, c in options.items()
    }
    assert "no loader for framework 'nosuch'" in (reasons["chat", "served"] or "")
    assert reasons["assistant", "keyed"] == "needs an API key: ANTHROPIC_API_KEY is not set"
    assert "provider 'acme' is not one vramdeck knows" in (reasons["assistant", "unknown"] or "")
    assert reasons["assistant", "local"] is None  # an unknown provider with its own endpoint
    assert reasons["chat", "big"] is None and reasons["vision", "a"] is None


def test_a_key_in_the_environment_makes_the_api_loadable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    _, tasks, _ = parse_config(CONFIG)
    assert cannot_load_reason(tasks["assistant"].options["keyed"]) is None


def test_skipped_options_are_never_suggested_nor_counted():
    planner = planner_for(CONFIG, {"cuda:0": 10, "cpu": 64})  # 9 GiB budget
    current = {"chat": "served", "assistant": "keyed", "vision": "a"}
    assert planner.skipped(current) == {
        "chat": planner.choices["chat"]["served"].skip_reason,
        "assistant": "needs an API key: ANTHROPIC_API_KEY is not set",
    }
    assert planner.total_bytes(current) == 3 * GIB  # only vision's model is placed
    best = planner.best(current)
    assert best.selection == {"chat": "big", "assistant": "local", "vision": "a"}
    assert best.combinations == 2 * 1 * 1  # big/small × local × a


def test_an_api_never_reads_does_not_fit_even_when_the_rest_is_over():
    planner = planner_for(CONFIG, {"cuda:0": 5, "cpu": 64})  # 4.5 GiB budget, 9 GiB selected
    current = {"chat": "big", "assistant": "local", "vision": "a"}
    assert not planner.fits(current)
    assert planner.option_over_budget(current, "assistant", "local") == {}
    assert planner.option_over_budget(current, "chat", "small") == {"cuda:0": int(0.5 * GIB)}


def test_other_processes_memory_comes_off_the_budget_from_one_reading():
    # 10 GiB card, threshold 0.9: 9 GiB for everything; another process holds 4.
    planner = planner_for(CONFIG, {"cuda:0": 10, "cpu": 64}, other_gb={"cuda:0": 4})
    room = planner.rooms["cuda:0"]
    assert (room.others, room.budget, room.taken_by_others) == (4 * GIB, 5 * GIB, 4 * GIB)
    assert not planner.fits({"chat": "big", "assistant": "local", "vision": "a"})  # 9 > 5
    assert planner.fits({"chat": "small", "assistant": "local", "vision": "a"})  # 5 ≤ 5


def test_what_the_managers_own_models_hold_is_not_counted_as_others():
    planner = planner_for(
        CONFIG, {"cuda:0": 10, "cpu": 64}, other_gb={"cuda:0": 4}, held={"cuda:0": 3 * GIB}
    )
    assert planner.rooms["cuda:0"].others == 1 * GIB
    assert planner.rooms["cuda:0"].budget == 8 * GIB


def test_memory_budget_caps_the_models_but_others_only_count_past_the_threshold():
    text = CONFIG.replace("offload_threshold: 0.9", "offload_threshold: 0.9\n  memory_budget_gb: 4")
    planner = planner_for(text, {"cuda:0": 10, "cpu": 64}, other_gb={"cuda:0": 4})
    assert planner.rooms["cuda:0"].budget == 4 * GIB  # min(cap 4, 9 − 4)
    assert planner.rooms["cuda:0"].taken_by_others == 0
    planner = planner_for(text, {"cuda:0": 10, "cpu": 64}, other_gb={"cuda:0": 7})
    assert planner.rooms["cuda:0"].budget == 2 * GIB  # 9 − 7
    assert planner.rooms["cuda:0"].taken_by_others == 2 * GIB


def test_auto_goes_to_the_card_with_the_most_room_counting_others():
    text = (
        "models:\n  t:\n    options:\n      a: {model_id: x, vram_gb: 3}\n"
        "inference:\n  offload_threshold: 1.0\n"
    )
    planner = planner_for(text, {"cuda:0": 10, "cuda:1": 8, "cpu": 64}, other_gb={"cuda:0": 6})
    plans = planner.placement({"t": "a"})
    assert plans["cuda:1"].tasks == {"t": 3 * GIB} and plans["cuda:0"].tasks == {}


def test_a_device_that_is_not_here_has_room_for_nothing():
    text = "models:\n  t:\n    options:\n      a: {model_id: x, vram_gb: 1, device: 'cuda:3'}\n"
    planner = planner_for(text, {"cpu": 64})
    plans = planner.placement({"t": "a"})
    assert plans["cuda:3"].room.name == "not present" and not plans["cuda:3"].fits


def test_validate_selection_gives_the_seeds_report_and_what_it_skipped():
    _, tasks, inference = parse_config(CONFIG)
    probe = FakeProbe({"cuda:0": 10, "cpu": 64}, other_gb={"cuda:0": 1})
    readings = {d: probe.read(d) for d in probe.devices()}
    report = validate_selection(tasks, readings, inference, lambda option, device: None)
    seed_keys = {"valid", "total_vram_gb", "total_required_gb", "threshold", "max_allowed_gb"}
    assert seed_keys | {"model_requirements", "devices", "skipped"} <= set(report)
    assert report["valid"] is False  # big 6 + a 3 = 9 GiB, budget 9 − 1 = 8
    assert report["total_required_gb"] == 9.0 and report["max_allowed_gb"] == 8.0
    assert report["skipped"] == {"assistant": "needs an API key: ANTHROPIC_API_KEY is not set"}
    devices = report["devices"]
    assert isinstance(devices, dict)
    assert set(devices) == {"cuda:0"}  # the host shows only when a model goes there
    cuda = devices["cuda:0"]
    assert cuda["others_gb"] == 1.0 and cuda["budget_gb"] == 8.0 and cuda["fits"] is False


def test_held_bytes_sums_the_loaded_models_per_device():
    loaded = {
        "a": {"device": "cuda:0", "measured_bytes": 2 * GIB},
        "b": {"device": "cuda:0", "measured_bytes": 1 * GIB},
        "c": {"device": "cpu", "measured_bytes": 5},
    }
    assert held_bytes(loaded) == {"cuda:0": 3 * GIB, "cpu": 5}
