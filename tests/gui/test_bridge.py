"""ManagerBridge over a manager with the fake probe and loader: events in, signals out."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes import FakeLoader, FakeProbe
from tests.gui.helpers import run, until, write_config
from vramdeck.gui.bridge import ManagerBridge
from vramdeck.gui.records import BudgetReport, LogEntry, MemorySample
from vramdeck.manager import Ledger, ModelManager, TaskState
from vramdeck.manager.loaders import ExternalAPILoader

CONFIG = """\
inference:
  memory_budget_gb: 0.6
  evict_verify_timeout_s: 0.2
models:
  alpha:
    selected: a
    options:
      a: {model_id: fake/a, vram_gb: 0.3}
      b: {model_id: fake/b, vram_gb: 0.2}
      env: {model_id: "${VRAMDECK_TEST_UNSET_VAR}/m", vram_gb: 0.1}
  beta:
    selected: b
    options:
      b: {model_id: fake/b2, vram_gb: 0.3}
  gamma:
    selected: c
    options:
      c: {model_id: fake/c, vram_gb: 0.2}
  broken:
    selected: x
    options:
      x: {model_id: fake/broken, vram_gb: 0.1}
  remote:
    selected: key
    options:
      key: {model_id: some-model, framework: external_api, provider: anthropic,
            requires_api_key: true, api_key_env: VRAMDECK_TEST_NO_KEY}
"""


class RecordingBridge(ManagerBridge):
    """The bridge, keeping the log lines it sent and the errors it raised."""

    def __init__(self, manager: ModelManager) -> None:
        super().__init__(manager)
        self.log: list[LogEntry] = []
        self.errors: list[tuple[str, str]] = []
        self.eventLogged.connect(self.log.append)
        self.errorRaised.connect(lambda title, text: self.errors.append((title, text)))


@pytest.fixture
def bridge(qloop, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("VRAMDECK_TEST_UNSET_VAR", raising=False)
    monkeypatch.delenv("VRAMDECK_TEST_NO_KEY", raising=False)
    probe = FakeProbe({"cuda:0": 4.0, "cpu": 64.0})
    loader = FakeLoader(probe, fail={"fake/broken"}, delay_s=0.05)
    manager = ModelManager(write_config(tmp_path, CONFIG), probe=probe,
                           loaders=[loader, ExternalAPILoader()], ledger=Ledger(None))  # fmt: skip
    bridge = RecordingBridge(manager)
    yield bridge
    run(qloop, bridge.shutdown())
    bridge.deleteLater()  # destroyed here, on the GUI thread


def kinds(bridge) -> list[str]:
    return [e.kind for e in bridge.log]


def test_a_load_becomes_log_lines_and_a_loaded_row(bridge, qloop, qtbot) -> None:
    busy: list[tuple[str, bool]] = []
    bridge.busyChanged.connect(lambda key, on: busy.append((key, on)))
    with qtbot.waitSignal(bridge.taskChanged):
        assert run(qloop, bridge.load("alpha"))
    assert kinds(bridge)[:2] == ["ModelLoading", "LoadProgress"]
    loaded = next(e for e in bridge.log if e.kind == "ModelLoaded")
    assert (loaded.task, loaded.model, loaded.device) == ("alpha", "a", "cuda:0")
    assert loaded.bytes == int(0.3 * 1024**3) and loaded.duration_s is not None
    row = bridge.task_row("alpha")
    assert row.state == "loaded" and row.measured_is_live and row.device == "cuda:0"
    assert row.last_used_at is not None and not row.busy
    assert busy == [("load:alpha", True), ("load:alpha", False)]


def test_evictions_are_logged_as_evictions(bridge, qloop) -> None:
    run(qloop, bridge.load("alpha"))
    run(qloop, bridge.load("beta"))  # 0.3 + 0.3 GiB: the 0.6 GiB budget is full
    run(qloop, bridge.load("gamma"))  # evicts alpha, the least recently used
    evicted = [e for e in bridge.log if e.kind == "ModelEvicted"]
    assert [(e.task, e.model, e.severity) for e in evicted] == [("alpha", "a", "eviction")]
    assert evicted[0].reason.startswith("room for gamma: idle ")  # and why (issue 12)
    assert bridge.task_row("alpha").state == "unloaded"
    assert run(qloop, bridge.evict_lru()) == "beta"


@pytest.mark.allow_log("loading broken .* failed")
def test_a_failed_load_is_an_error_and_a_failed_row(bridge, qloop) -> None:
    assert not run(qloop, bridge.load("broken"))
    title, text = bridge.errors[0]
    assert title == "Could not load broken" and "cannot load fake/broken" in text
    row = bridge.task_row("broken")
    assert row.state == "failed" and "cannot load fake/broken" in (row.failure or "")
    failed = next(e for e in bridge.log if e.kind == "LoadFailed")
    assert failed.severity == "error"
    assert run(qloop, bridge.load("alpha"))  # still usable


@pytest.mark.allow_log("loading remote .* failed")
def test_a_missing_api_key_is_a_clear_failure(bridge, qloop) -> None:
    assert not run(qloop, bridge.load("remote"))
    assert "VRAMDECK_TEST_NO_KEY" in bridge.errors[0][1]
    assert bridge.task_row("remote").device == "API"


def test_an_unset_variable_makes_the_option_unavailable(bridge) -> None:
    option = next(o for o in bridge.task_row("alpha").options if o.name == "env")
    assert not option.available
    assert "$VRAMDECK_TEST_UNSET_VAR" in (option.unavailable_reason or "")


def test_selection_marks_the_config_changed(bridge, qloop, qtbot) -> None:
    with qtbot.waitSignal(bridge.configDirtyChanged) as dirty:
        assert run(qloop, bridge.select("alpha", "b"))
    assert dirty.args == [True] and bridge.config_dirty
    assert bridge.selections()["alpha"] == "b"
    assert bridge.config_mtime == bridge.config_path.stat().st_mtime
    selected = next(e for e in bridge.log if e.kind == "SelectionChanged")
    assert selected.reason == "a → b"


def test_a_bad_config_keeps_the_last_good_one(bridge, qloop, qtbot, tmp_path: Path) -> None:
    bad = write_config(tmp_path, "models:\n  alpha:\n    selected: nope\n", "bad.yaml")
    assert not run(qloop, bridge.reload_config(bad))
    title, text = bridge.errors[0]
    assert "still using models.yaml" in title and "bad.yaml:2: models.alpha.options" in text
    assert bridge.task_names() == ["alpha", "beta", "gamma", "broken", "remote"]
    assert bridge.config_path.name == "models.yaml"
    good = write_config(tmp_path, "models:\n  solo:\n    options:\n      x: {model_id: fake/x}\n",
                        "good.yaml")  # fmt: skip
    with qtbot.waitSignal(bridge.tasksReset), qtbot.waitSignal(bridge.configLoaded):
        assert run(qloop, bridge.reload_config(good))
    assert bridge.task_names() == ["solo"]


def test_budget_plan_per_device(bridge, qloop, qtbot) -> None:
    with qtbot.waitSignal(bridge.budgetPlanned) as planned:
        report = run(qloop, bridge.plan_budget())
    assert isinstance(report, BudgetReport) and planned.args == [report]
    assert not report.valid  # 0.9 GiB of local models, 0.6 GiB allowed
    plan = next(p for p in report.plans if p.device == "cuda:0")
    assert plan.budget == pytest.approx(0.6 * 1024**3, rel=1e-6)
    assert set(plan.tasks) == {"alpha", "beta", "gamma", "broken"} and not plan.fits
    assert report.external_tasks == ("remote",)


def test_samples_carry_the_budget_lines(bridge, qloop) -> None:
    samples: list[MemorySample] = []
    bridge.memorySampled.connect(samples.append)

    async def sample() -> None:
        await bridge.start(sample_interval_s=0.02)
        await bridge.load("alpha")
        await until(lambda: any(s.per_task for s in samples), "a sample shows alpha")

    run(qloop, sample())
    assert [d.device for d in bridge.devices] == ["cuda:0", "cpu"]
    assert bridge.primary_device == "cuda:0"
    s = next(s for s in samples if s.device == "cuda:0" and s.per_task)
    assert s.total == 4 * 1024**3 and s.threshold == int(0.85 * s.total)  # the default
    assert s.memory_budget == int(0.6 * 1024**3) and s.limit == s.memory_budget
    assert s.per_task == {"alpha": int(0.3 * 1024**3)} and s.manager == s.per_task["alpha"]


def test_shutdown_reports_progress_and_ends_commands(bridge, qloop) -> None:
    progress: list[tuple[int, int]] = []
    bridge.shutdownProgress.connect(lambda done, total: progress.append((done, total)))
    run(qloop, bridge.load("alpha"))
    run(qloop, bridge.load("beta"))
    run(qloop, bridge.shutdown())
    assert progress == [(0, 2), (1, 2), (2, 2)]
    assert not run(qloop, bridge.load("alpha"))  # refused quietly once shut down
    assert not bridge.errors


@pytest.mark.allow_log("unloading alpha .* failed")
def test_shutdown_counts_a_model_whose_unload_failed(bridge, qloop) -> None:
    progress: list[tuple[int, int]] = []
    bridge.shutdownProgress.connect(lambda done, total: progress.append((done, total)))
    run(qloop, bridge.load("alpha"))
    loader = bridge._manager.registry.get("fake")

    def refuse(model: object, device: str) -> None:
        raise RuntimeError("driver said no")

    loader.unload = refuse  # the unload fails: the event's error says so, its cause is unchanged
    run(qloop, bridge.shutdown())
    assert progress == [(0, 1), (1, 1)]
    unloaded = next(e for e in bridge.log if e.kind == "ModelUnloaded")
    assert unloaded.reason == "shutdown; the unload failed: RuntimeError: driver said no"
    assert unloaded.severity == "info" and bridge.task_row("alpha").state == "unloaded"


def test_rows_and_log_lines_come_from_typed_values(bridge, qloop) -> None:
    run(qloop, bridge.load("alpha"))
    row = bridge.task_row("alpha")
    assert row.state == TaskState.LOADED and row.measured_bytes == int(0.3 * 1024**3)
    assert bridge.task_row("remote").device == "API"
    assert bridge.task_row("alpha").pinned is False
    bridge.set_pinned("alpha", True)
    assert bridge.task_row("alpha").pinned and bridge._manager.is_pinned("alpha")
    report = run(qloop, bridge.plan_budget())
    assert isinstance(report, BudgetReport) and report.external_tasks == ("remote",)
    cuda = next(p for p in report.plans if p.device == "cuda:0")
    assert cuda.budget == int(0.6 * 1024**3) and cuda.tasks["alpha"] == int(0.3 * 1024**3)


@pytest.mark.allow_log("loading broken .* failed")
def test_a_failure_belongs_to_the_option_that_failed(bridge, qloop, tmp_path: Path) -> None:
    assert not run(qloop, bridge.load("broken"))
    assert bridge.task_row("broken").state == "failed"
    good = CONFIG.replace("x: {model_id: fake/broken, vram_gb: 0.1}",
                          "x: {model_id: fake/broken, vram_gb: 0.1}\n      y: {model_id: fake/y}")  # fmt: skip
    assert run(qloop, bridge.reload_config(write_config(tmp_path, good, "good.yaml")))
    assert not run(qloop, bridge.load("broken"))
    assert run(qloop, bridge.select("broken", "y"))
    row = bridge.task_row("broken")
    assert row.state == "unloaded" and row.failure is None  # y never failed
    assert run(qloop, bridge.select("broken", "x"))
    assert bridge.task_row("broken").state == "failed"
