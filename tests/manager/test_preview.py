"""Previews against the real actions: over random states (fake loaders, one whose evicted models
are unloaded and one whose are parked in host RAM, and a fake probe), what a preview says a load,
a switch or a warm-up evicts is what the action then evicts."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fakes import FakeLoader, FakeProbe, ParkingFakeLoader, SleepingFakeLoader
from vramdeck.manager import Ledger, ModelEvicted, ModelLoading, ModelManager, ModelParked
from vramdeck.manager.config import GIB
from vramdeck.manager.preview import Preview
from vramdeck.manager.residency import Residency

TASKS = ("t0", "t1", "t2", "t3", "t4")
DEVICES = ("auto", "auto", "cuda:0", "cpu", "cuda:1")


@st.composite
def states(draw: st.DrawFn) -> dict:
    """A config, a device set and the steps that bring the manager to a state."""
    tasks = {}
    for name in TASKS:
        count = draw(st.integers(1, 3))
        tasks[name] = {
            f"o{i}": (draw(st.integers(1, 6)), draw(st.sampled_from(DEVICES))) for i in range(count)
        }
    kinds = st.sampled_from(["load", "load", "load", "pin", "select", "touch", "hold"])
    steps = draw(st.lists(st.tuples(kinds, st.sampled_from(TASKS), st.integers(0, 2)), max_size=8))
    action_task = draw(st.sampled_from(TASKS))
    if draw(st.booleans()):  # often the action's own task is loaded: a switch then unloads it
        steps.append(("load", action_task, 0))
    return {
        "tasks": tasks,
        "two_gpus": draw(st.booleans()),
        "budget": draw(st.one_of(st.none(), st.integers(3, 9))),
        "other": draw(st.integers(0, 3)),
        "steps": steps,
        "action": (
            draw(st.sampled_from(["load", "switch", "warmup", "what_fits"])),
            action_task,
            draw(st.integers(0, 2)),
        ),
    }


def _yaml(state: dict, parks: bool) -> str:
    lines = ["models:"]
    for name, options in state["tasks"].items():
        lines.append(f"  {name}:")
        lines.append("    options:")
        for option, (gb, device) in options.items():
            lines.append(f"      {option}: {{model_id: {name}-{option}, vram_gb: {gb}, "
                         f"device: '{device}'}}")  # fmt: skip
    lines.append("inference:")
    lines.append("  offload_threshold: 0.8")
    if parks:  # a tier that fills: parks drop older ones, and some are refused
        lines.append("  host_cache_gb: 6")
    if state["budget"] is not None:
        lines.append(f"  memory_budget_gb: {state['budget']}")
    return "\n".join(lines) + "\n"


def _manager(state: dict, folder: Path, parks: bool) -> tuple[ModelManager, FakeProbe]:
    devices = {"cuda:0": 10.0, "cpu": 32.0}
    if state["two_gpus"]:
        devices["cuda:1"] = 8.0
    probe = FakeProbe(devices, other_gb={"cuda:0": state["other"]})
    path = folder / "models.yaml"
    path.write_text(_yaml(state, parks), encoding="utf-8")
    loader = ParkingFakeLoader(probe) if parks else FakeLoader(probe)
    manager = ModelManager(path, probe=probe, loaders=[loader], ledger=Ledger(None))
    return manager, probe


def _manager_on(
    folder: Path, devices: dict[str, float], loader: type[FakeLoader], config: str
) -> ModelManager:
    """A manager of `config` (written to `folder`) over a fake probe of `devices` (GiB) and
    one `loader` on it."""
    path = folder / "models.yaml"
    path.write_text(config, encoding="utf-8")
    probe = FakeProbe(devices)
    return ModelManager(path, probe=probe, loaders=[loader(probe)], ledger=Ledger(None))


async def _bring_to_state(m: ModelManager, steps: list, held: contextlib.AsyncExitStack) -> None:
    for kind, task, index in steps:
        options = list(m.tasks[task].options)
        try:
            if kind == "load":
                await m.load_model(task)
            elif kind == "hold":  # held through use() until the action is over
                await held.enter_async_context(m.use(task))
            elif kind == "pin":
                m.set_pinned(task, True)
            elif kind == "select":
                await m.set_selected_model(task, options[index % len(options)])
            else:
                await m.get_model(task) if task in m.loaded_models else None
        except (ValueError, RuntimeError):
            pass  # a step that cannot run here leaves the state as it is


async def _act(m: ModelManager, action: tuple) -> tuple[Preview, bool, list, object]:
    """The preview, then the real action: whether it succeeded, what it evicted (task, device,
    bytes freed), its result."""
    kind, task, index = action
    options = [o for o in m.tasks[task].options if o != m.tasks[task].selected]
    option = options[index % len(options)] if options else m.tasks[task].selected
    preview = {
        "load": lambda: m.preview_load(task),
        "switch": lambda: m.preview_switch(task, option),
        "warmup": m.preview_warmup,
        "what_fits": m.preview_warmup,
    }[kind]()
    evicted: list[tuple[str, str, int, bool]] = []  # ... and whether it was parked
    parked: list[str] = []  # (a park is reported just before its eviction)
    m.events.subscribe(lambda e: parked.append(e.task), ModelParked)
    m.events.subscribe(
        lambda e: evicted.append((e.task, e.device, e.freed_bytes, parked[-1:] == [e.task])),
        ModelEvicted,
    )
    result: object = None
    try:
        if kind == "load":
            await m.load_model(task)
        elif kind == "switch":
            await m.set_selected_model(task, option)
        elif kind == "warmup":
            await m.warmup_models(force=True)
        else:
            result = await m.warmup_what_fits()
    except (ValueError, RuntimeError):
        return preview, False, evicted, result
    return preview, True, evicted, result


@pytest.mark.parametrize("parks", [False, True], ids=["unloads", "parks"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(state=states())
@example(  # found by a run: a warm-up on two GPUs under a budget, a pinned-device task in it
    state={
        "tasks": {
            "t0": {"o0": (3, "auto")},
            "t1": {"o0": (1, "cuda:0")},
            "t2": {"o0": (3, "auto")},
            "t3": {"o0": (2, "auto")},
            "t4": {"o0": (4, "auto"), "o1": (1, "auto")},
        },
        "two_gpus": True,
        "budget": 4,
        "other": 0,
        "steps": [("load", "t4", 0)],
        "action": ("warmup", "t4", 0),
    }
)
def test_a_preview_is_what_the_action_does(parks: bool, state: dict) -> None:
    """`parks`: evicted models on a GPU are parked in host RAM (the residency tiers), and a
    load of a parked task brings it back."""

    async def run(folder: Path) -> None:
        m, _probe = _manager(state, folder, parks)
        try:
            async with contextlib.AsyncExitStack() as held:
                await _bring_to_state(m, state["steps"], held)
                before = dict(m.loaded_models)
                preview, ok, evicted, result = await _act(m, state["action"])
            kind = state["action"][0]
            if kind == "what_fits":
                assert result == list(preview.what_fits)
                return
            planned = [
                (e.task, e.device, e.bytes, e.goes_to is Residency.HOST) for e in preview.evictions
            ]
            assert planned == evicted, preview.summary
            if kind == "warmup":
                every = [
                    t for t in m.tasks if not m.tasks[t].get_selected_config().unavailable_reason
                ]
                assert preview.fits == (not evicted and set(every) <= set(m.loaded_models))
                return
            assert preview.fits == ok, preview.summary
            assert all(e.task in before for e in preview.evictions)
        finally:
            await m.shutdown()

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run(Path(folder)))


CONFIG = """
models:
  gpt2-medium: {options: {m: {model_id: gpt2-medium, vram_gb: 4}, small: {model_id: gpt2, vram_gb: 1}}}
  minilm: {options: {m: {model_id: minilm, vram_gb: 3}}}
  chat: {priority: 3, options: {m: {model_id: chat, vram_gb: 3}}}
inference: {offload_threshold: 0.75}
"""


async def test_a_load_preview_names_victims_bytes_and_restore_cost(make_manager):
    m, probe, _ = make_manager(CONFIG)  # 7.5 GiB may be used of 10
    await m.load_model("gpt2-medium")
    await m.load_model("minilm")
    m.host_tier_status()  # the tier's default budget, read from the host once per manager
    reads = probe.reads
    preview = m.preview_load("chat")
    assert probe.reads - reads == len(probe.devices())  # one reading of each device
    assert preview.fits
    (victim,) = preview.evictions
    assert (victim.task, victim.option, victim.device) == ("gpt2-medium", "m", "cuda:0")
    assert victim.bytes == 4 * GIB and victim.goes_to is Residency.OFF
    loaded = m.task_status("gpt2-medium").load_duration_s
    assert victim.restore_s == pytest.approx(loaded)  # measured: its own load time
    assert "would evict gpt2-medium (4.00 GiB, unloaded" in preview.summary
    assert list(m.loaded_models) == ["gpt2-medium", "minilm"]  # nothing changed


async def test_a_switch_preview_counts_the_old_model_as_gone_and_offers_the_smaller(make_manager):
    m, _, _ = make_manager(CONFIG)
    await m.load_model("minilm")
    await m.load_model("chat")
    await m.load_model("gpt2-medium")  # evicts minilm: 3 + 4 = 7 of 7.5
    assert list(m.loaded_models) == ["chat", "gpt2-medium"]
    big = m.preview_switch("gpt2-medium", "small")
    assert big.fits and big.evictions == ()  # the old 4 GiB go first: 1 GiB fits
    none = m.preview_load("minilm")
    assert [e.task for e in none.evictions] == ["chat"]
    with pytest.raises(ValueError, match="Invalid model name: nope"):
        m.preview_switch("gpt2-medium", "nope")


async def test_alternatives_are_the_options_that_fit_with_fewer_evictions(make_manager):
    m, _, _ = make_manager(CONFIG)
    await m.load_model("minilm")
    await m.load_model("chat")  # 6 of 7.5 used
    preview = m.preview_switch("gpt2-medium", "m")  # not loaded: a switch loads nothing now
    assert "uses m already" in preview.summary
    preview = m.preview_load("gpt2-medium")
    assert [e.task for e in preview.evictions] == ["minilm"]
    assert [(a.option, a.evictions, a.fits) for a in preview.alternatives] == [("small", 0, True)]
    assert preview.summary.endswith("; small would fit with no eviction")


async def test_warmup_preview_says_who_pushes_whom_out_and_what_fits(make_manager):
    m, _, _ = make_manager(CONFIG)
    preview = m.preview_warmup()
    assert not preview.fits
    assert [e.task for e in preview.evictions] == ["gpt2-medium"]
    assert preview.summary == "loading all 3 would evict gpt2-medium for chat"  # no load times yet
    assert preview.what_fits == ("chat", "gpt2-medium")  # chat has priority 3
    assert await m.warmup_what_fits() == ["chat", "gpt2-medium"]
    assert set(m.loaded_models) == {"chat", "gpt2-medium"}
    await m.unload_all()
    await m.load_model("minilm")  # now every load time is measured
    await m.unload_model("minilm")
    again = m.preview_warmup()
    assert again.summary.startswith("loading all 3 would evict gpt2-medium for chat ")
    assert again.summary.endswith(" later")


async def test_a_preview_of_what_cannot_load_says_why(make_manager):
    m, _, _ = make_manager(
        """
        models:
          big: {options: {m: {model_id: big, vram_gb: 20}}}
          gone: {options: {m: {model_id: gone, vram_gb: 1, device: 'cuda:3'}}}
        """
    )
    big = m.preview_load("big")
    assert not big.fits and "does not fit on cuda:0" in big.summary
    gone = m.preview_load("gone")
    assert not gone.fits and "device cuda:3 is not present" in gone.summary


async def test_a_load_in_flight_is_joined_so_its_preview_evicts_nothing_more(make_manager):
    m, _, loader = make_manager(CONFIG, gate=threading.Event())
    started = asyncio.Event()
    m.events.subscribe(lambda e: started.set(), ModelLoading)
    flight = asyncio.ensure_future(m.load_model("chat"))
    await started.wait()
    preview = m.preview_load("chat")
    assert preview.fits and preview.evictions == () and preview.summary == "chat is loading already"
    loader.gate.set()
    await flight
    assert m.preview_load("chat").summary == "chat is loaded already (m)"


async def test_warm_up_previews_skip_what_cannot_load_and_say_why(make_manager):
    m, _, _ = make_manager(
        CONFIG.replace(
            "inference:",
            "  remote: {options: {m: {model_id: gpt-x, framework: external_api, provider: openai,"
            " requires_api_key: true, api_key_env: VRAMDECK_TEST_UNSET_KEY}}}\ninference:",
        )
    )
    preview = m.preview_warmup()
    assert "remote" not in preview.what_fits
    assert preview.summary.endswith(
        "; remote would not load (m cannot load here: needs an API key: "
        "VRAMDECK_TEST_UNSET_KEY is not set)"
    )
    assert await m.warmup_what_fits() == list(preview.what_fits)


async def test_previews_change_nothing_of_the_real_state(make_manager):
    m, probe, _ = make_manager(CONFIG)
    await m.load_model("gpt2-medium")
    await m.load_model("minilm")
    table = m._core.table

    def state() -> list[tuple]:
        return [
            (r.task, r.owner is table.entry(r.task), r.leases, r.last_used, r.device, r.bytes,
             dict(r.bytes_by_device), r.model)
            for r in table.residents()
        ]  # fmt: skip

    before, used, parked = state(), dict(probe.used), m._core.host_tier.tasks()
    async with m.use("minilm"):  # a lease the what-fits play adds to its copies, never here
        held = state()
        assert m.preview_warmup().evictions  # it plays loads, evictions and leases on its copy
        m.preview_load("chat")
        m.preview_switch("gpt2-medium", "small")
        assert state() == held and dict(probe.used) == used
    assert state()[0] == before[0] and m._core.host_tier.tasks() == parked


async def test_a_warm_up_preview_parks_as_the_host_s_free_ram_allows(tmp_path: Path) -> None:
    # 7.5 GiB may be used of cuda:0; the host has 8 GiB, of which parking leaves 2 free. With a
    # and b loaded, c pushes a out (parked: 4 GiB), then d pushes b out, and b's 3 GiB no longer
    # fit in RAM: it is unloaded. A plan that read the host afresh each time would park b too.
    m = _manager_on(
        tmp_path,
        {"cuda:0": 10.0, "cpu": 8.0},
        ParkingFakeLoader,
        "models:\n"
        + "".join(
            f"  {t}: {{options: {{m: {{model_id: {t}, vram_gb: {gb}, device: 'cuda:0'}}}}}}\n"
            for t, gb in (("a", 4), ("b", 3), ("c", 4), ("d", 3))
        )
        + "inference: {offload_threshold: 0.75, host_cache_gb: 8}\n",
    )
    parked: list[str] = []
    evicted: list[str] = []
    m.events.subscribe(lambda e: parked.append(e.task), ModelParked)
    m.events.subscribe(lambda e: evicted.append(e.task), ModelEvicted)
    try:
        await m.load_model("a")
        await m.load_model("b")
        preview = m.preview_warmup()
        planned = [(e.task, e.goes_to) for e in preview.evictions]
        assert planned == [("a", Residency.HOST), ("b", Residency.OFF)], preview.summary
        await m.warmup_models(force=True)
        assert (evicted, parked) == (["a", "b"], ["a"])  # as previewed
    finally:
        await m.shutdown()


async def test_a_parked_model_is_previewed_back_on_its_own_device(tmp_path: Path) -> None:
    # p (auto) went to cuda:0 and was parked for q. Loaded cold it would go to the empty cuda:1;
    # the load brings it back where it was instead, and that evicts q (parked in turn).
    m = _manager_on(
        tmp_path,
        {"cuda:0": 10.0, "cuda:1": 10.0, "cpu": 64.0},
        ParkingFakeLoader,
        "models:\n"
        "  p: {options: {m: {model_id: p, vram_gb: 4}}}\n"
        "  q: {options: {m: {model_id: q, vram_gb: 4, device: 'cuda:0'}}}\n"
        "inference: {offload_threshold: 0.75, host_cache_gb: 16}\n",
    )
    evicted: list[tuple[str, str, int, bool]] = []  # ... and whether it was parked
    parked: list[str] = []  # (a park is reported just before its eviction)
    m.events.subscribe(lambda e: parked.append(e.task), ModelParked)
    m.events.subscribe(
        lambda e: evicted.append((e.task, e.device, e.freed_bytes, parked[-1:] == [e.task])),
        ModelEvicted,
    )
    try:
        await m.load_model("p")
        await m.load_model("q")
        assert m.task_status("p").residency is Residency.HOST and evicted[0][0] == "p"
        preview = m.preview_load("p")
        assert [(e.task, e.device, e.bytes, e.goes_to) for e in preview.evictions] == [
            ("q", "cuda:0", 4 * GIB, Residency.HOST)
        ], preview.summary
        warm = m.preview_warmup()  # p comes back, evicting q; then q comes back, evicting p
        planned = [(e.task, e.device, e.bytes, e.goes_to is Residency.HOST) for e in warm.evictions]
        await m.warmup_models(force=True)
        both_parked = [("q", "cuda:0", 4 * GIB, True), ("p", "cuda:0", 4 * GIB, True)]
        assert evicted[1:] == planned == both_parked
    finally:
        await m.shutdown()


async def test_a_model_the_preview_puts_to_sleep_keeps_what_it_kept_last_time(
    tmp_path: Path,
) -> None:
    # Servers keep 1 GB of contexts asleep. Once each has slept, the ledger knows it: a
    # warm-up preview that puts a to sleep counts a's 1 GB still held, so c's return then
    # needs b to sleep too, as the action finds. Counted as 0, c would have fit beside b.
    m = _manager_on(
        tmp_path,
        {"cuda:0": 10.0, "cpu": 64.0},
        SleepingFakeLoader,
        "models:\n"
        "  a: {options: {m: {model_id: a, vram_gb: 4, device: 'cuda:0'}}}\n"
        "  b: {options: {m: {model_id: b, vram_gb: 4, device: 'cuda:0'}}}\n"
        "  c: {options: {m: {model_id: c, vram_gb: 4.5, device: 'cuda:0'}}}\n"
        "inference: {offload_threshold: 0.85}\n",
    )
    evicted: list[str] = []
    m.events.subscribe(lambda e: evicted.append(e.task), ModelEvicted)
    try:
        for task in ("a", "b", "c", "a"):  # a and b sleep for c; then c sleeps for a
            await m.load_model(task)
        asleep = [t for t in m.tasks if m.residency(t) is Residency.SLEEPING]
        assert asleep == ["b", "c"] and evicted == ["a", "b", "c"]
        preview = m.preview_warmup()
        await m.warmup_models(force=True)
        assert [(e.task, e.goes_to) for e in preview.evictions] == [
            ("a", Residency.SLEEPING),
            ("b", Residency.SLEEPING),
        ], preview.summary
        assert evicted[3:] == ["a", "b"]
    finally:
        await m.shutdown()


async def test_a_long_warm_up_summary_names_the_first_pushes_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    lines = ["models:"]
    lines += [f"  t{i:02d}: {{options: {{m: {{model_id: t{i}, vram_gb: 2}}}}}}" for i in range(12)]
    m = _manager_on(
        tmp_path,
        {"cuda:0": 10.0, "cpu": 64.0},
        FakeLoader,
        "\n".join([*lines, "inference: {offload_threshold: 0.8}", ""]),
    )
    try:
        preview = m.preview_warmup()  # four fit at a time: the other eight each push one out
        assert len(preview.evictions) == 8
        assert preview.summary == (
            "loading all 12 would evict t00 for t04, t01 for t05, t02 for t06, t03 for t07, "
            "t04 for t08 and 3 more evictions"
        )
    finally:
        await m.shutdown()


async def test_previews_follow_what_changes_between_them(tmp_path: Path) -> None:
    """What options take is remembered across previews until it can change: an estimate set
    in place, a measured load (the ledger), a new config."""
    m = _manager_on(
        tmp_path,
        {"cuda:0": 10.0, "cpu": 64.0},
        FakeLoader,
        "models:\n"
        "  a: {options: {m: {model_id: a, vram_gb: 4, device: 'cuda:0'}}}\n"
        "  b: {options: {m: {model_id: b, vram_gb: 2, device: 'cuda:0'}}}\n"
        "inference: {offload_threshold: 0.8}\n",
    )
    try:
        await m.load_model("a")
        assert m.preview_load("b").evictions == ()  # 4 + 2 of 8
        m.tasks["b"].get_selected_config().vram_gb = 5
        assert [e.task for e in m.preview_load("b").evictions] == ["a"]  # 4 + 5 > 8
        m.ledger.record(m.tasks["b"].get_selected_config(), "cuda:0", 1 * GIB)  # measured
        assert m.preview_load("b").evictions == ()
        path = tmp_path / "models.yaml"  # the config _manager_on wrote
        text = path.read_text().replace("model_id: b, vram_gb: 2", "model_id: b2, vram_gb: 6")
        path.write_text(text, encoding="utf-8")
        await m.reload_config()  # another model, not measured: 4 + 6 > 8
        assert [e.task for e in m.preview_load("b").evictions] == ["a"]
    finally:
        await m.shutdown()
