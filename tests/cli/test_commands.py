"""The headless commands in-process: their reports, their exit codes, and the plan's search."""

from __future__ import annotations

import dataclasses
import io
import json
import sys
import types
from pathlib import Path

import pytest

from tests.cli.conftest import BAD_VALUE, DOES_NOT_FIT, FITS, NOTHING_FITS
from tests.fakes import FakeProbe
from vramdeck import cli, commands
from vramdeck.manager import demo_models
from vramdeck.manager.config import GIB, load_config, parse_config
from vramdeck.manager.ledger import Ledger, default_ledger_path
from vramdeck.manager.planning import Planner


def run(fn, *args, **kwargs) -> tuple[int, str]:
    out = io.StringIO()
    code = fn(*args, out=out, **kwargs)
    return code, out.getvalue()


# ---------------------------------------------------------------------- validate


def test_validate_prints_a_table_per_device_and_exits_0_when_it_fits(write_config):
    code, text = run(commands.run_validate, str(write_config(FITS)), as_json=False)
    assert code == 0
    assert "cpu — System RAM: budget 4.00 GiB" in text
    assert "chat    small   gpt2   1.00 GiB  estimate" in text
    assert "total                  3.00 GiB  of 4.00 GiB budget: fits" in text
    assert text.rstrip().endswith("OK: the selected models fit every device's budget.")


def test_validate_exits_1_and_names_the_device_when_it_does_not_fit(write_config):
    code, text = run(commands.run_validate, str(write_config(DOES_NOT_FIT)), as_json=False)
    assert code == 1
    assert "5.00 GiB  of 4.00 GiB budget: DOES NOT FIT" in text
    assert "Does not fit: cpu over budget" in text


def test_validate_json_has_the_managers_report(write_config):
    code, text = run(commands.run_validate, str(write_config(DOES_NOT_FIT)), as_json=True)
    report = json.loads(text)
    assert code == 1 and report["valid"] is False
    assert report["devices"]["cpu"]["tasks"] == {"chat": 3.0, "vision": 2.0}
    assert report["devices"]["cpu"]["probe"] == "host"
    assert report["model_requirements"]["chat"]["option"] == "big"


def test_validate_uses_measured_sizes_and_the_gpu_budget(write_config):
    text = FITS.replace(", device: cpu", "")
    text = text.replace("memory_budget_gb: 4", "offload_threshold: 0.5")
    path = write_config(text)
    ledger = Ledger(default_ledger_path())  # the private cache folder of this test
    ledger.record(load_config(path).tasks["vision"].options["a"], "cuda:0", int(1.5 * GIB))
    ledger.save()
    probe = FakeProbe({"cuda:0": 6.0, "cpu": 64.0})
    code, out = run(commands.run_validate, str(path), as_json=True, probe=probe)
    report = json.loads(out)
    assert code == 0
    assert report["devices"]["cuda:0"]["budget_gb"] == 3.0
    assert report["devices"]["cuda:0"]["tasks"] == {"chat": 1.0, "vision": 1.5}
    assert report["model_requirements"]["vision"]["measured"] is True
    code, out = run(commands.run_validate, str(path), as_json=False, probe=probe)
    assert "vision  a       x/a    1.50 GiB  measured" in out


def test_validate_lists_external_apis_and_unloadable_options(write_config):
    text = (
        FITS.replace("selected: a", "selected: b")
        .replace("selected: small", "selected: api")
        .replace("b: {model_id: x/b", "b: {framework: nosuch, model_id: x/b")
    )
    code, out = run(commands.run_validate, str(write_config(text)), as_json=False)
    assert code == 0
    assert "external APIs (no local memory)" in out and "chat  api     claude-x" in out
    assert (
        "note: vision: the selected option cannot load here (not counted): no loader for "
        "framework 'nosuch'" in out
    )
    assert (
        "vision"
        not in json.loads(run(commands.run_validate, str(write_config(text)), as_json=True)[1])[
            "devices"
        ]["cpu"]["tasks"]
    )


# ---------------------------------------------------------------------- plan


def test_plan_lists_which_options_fit_with_the_others(write_config):
    code, text = run(commands.run_plan, str(write_config(FITS)), as_json=True)
    report = json.loads(text)
    chat = report["tasks"]["chat"]["options"]
    assert code == 0
    assert chat["small"]["fits_with_others"] is True
    assert chat["big"]["fits_with_others"] is False
    assert chat["big"]["over_budget_gb"] == {"cpu": 1.0}
    assert chat["api"]["fits_with_others"] is True and chat["api"]["external"] is True
    assert report["tasks"]["vision"]["options"]["b"]["fits_with_others"] is True


def test_plan_suggests_the_fitting_selection_with_the_largest_models(write_config):
    code, text = run(commands.run_plan, str(write_config(FITS)), as_json=True)
    suggestion = json.loads(text)["suggestion"]
    assert code == 0
    assert suggestion["search"] == "exhaustive" and suggestion["combinations"] == 6
    assert suggestion["selection"] == {"chat": "small", "vision": "b"}
    assert suggestion["changes"] == {"vision": {"from": "a", "to": "b"}}
    assert suggestion["total_gb"] == 3.5


def test_plan_exits_0_when_the_current_selection_does_not_fit_but_another_does(write_config):
    code, text = run(commands.run_plan, str(write_config(DOES_NOT_FIT)), as_json=False)
    assert code == 0
    assert "Current selection: 5.00 GiB, does not fit." in text
    assert "api     claude-x   API       fits (no local memory)" in text
    assert "Suggested selection (exhaustive search over 6 combinations), 3.50 GiB in all:" in text
    assert "chat    small  (now big)" in text
    assert "big     big/model  3.00 GiB  does not fit (cpu over by 1.00 GiB)" in text


def test_plan_previews_the_warm_up_of_the_current_selection(write_config):
    _, text = run(commands.run_plan, str(write_config(DOES_NOT_FIT)), as_json=False)
    assert "Warm-up preview: loading all 2 would evict chat for vision." in text
    assert "Warm up what fits would load: chat." in text
    _, data = run(commands.run_plan, str(write_config(FITS)), as_json=True)
    warmup = json.loads(data)["current"]["warmup"]
    assert warmup == {"fits": True, "summary": "all 2 fit: warming them up evicts nothing",
                      "evicts": [], "what_fits": ["chat", "vision"]}  # fmt: skip


def test_plan_exits_1_when_nothing_fits(write_config):
    code, text = run(commands.run_plan, str(write_config(NOTHING_FITS)), as_json=False)
    assert code == 1
    assert "No selection fits (exhaustive search over 2 combinations)." in text


def test_plan_goes_greedy_above_the_limit_and_says_so(write_config):
    code, text = run(commands.run_plan, str(write_config(DOES_NOT_FIT)), as_json=True, limit=5)
    suggestion = json.loads(text)["suggestion"]
    assert code == 0
    assert suggestion["search"] == "greedy"
    assert suggestion["selection"] == {"chat": "small", "vision": "b"}


def test_plan_never_suggests_an_option_that_cannot_load(write_config):
    text = FITS.replace("b: {model_id: x/b", "b: {framework: nosuch, model_id: x/b")
    code, out = run(commands.run_plan, str(write_config(text)), as_json=True)
    report = json.loads(out)
    assert code == 0
    assert report["suggestion"]["selection"] == {"chat": "small", "vision": "a"}
    assert (
        "no loader for framework" in report["tasks"]["vision"]["options"]["b"]["unavailable_reason"]
    )


def planner_for(text: str, devices: dict[str, float]) -> Planner:
    _, tasks, inference = parse_config(text)
    probe = FakeProbe(devices)
    readings = {d: probe.read(d) for d in probe.devices()}
    return Planner.from_tasks(tasks, readings, inference, lambda option, device: None)


def test_exhaustive_and_greedy_agree_on_an_easy_case_with_two_gpus():
    sizes = {"t1": [8, 4, 1], "t2": [9, 5, 2], "t3": [7, 3]}
    text = "models:\n" + "".join(
        f"  {t}:\n    options:\n"
        + "".join(f"      o{gb}: {{model_id: m{t}{gb}, vram_gb: {gb}}}\n" for gb in gbs)
        for t, gbs in sizes.items()
    )
    text += "inference: {offload_threshold: 0.9}\n"  # not the default 0.85
    planner = planner_for(text, {"cuda:0": 10, "cuda:1": 10, "cpu": 64})  # 9 GiB budget each
    current = {"t1": "o1", "t2": "o2", "t3": "o3"}
    exhaustive = planner.best(current)
    greedy = planner.best(current, limit=1)
    assert exhaustive.search == "exhaustive" and greedy.search == "greedy"
    assert exhaustive.total_bytes == 17 * GIB  # 8 on one card, 7 + 2 on the other; 18 cannot fit
    assert exhaustive.selection is not None and greedy.selection is not None
    assert planner.fits(exhaustive.selection) and planner.fits(greedy.selection)
    assert greedy.total_bytes <= exhaustive.total_bytes


def test_ties_keep_the_current_selection():
    text = (
        "models:\n  t:\n    selected: b\n    options:\n"
        "      a: {model_id: x, vram_gb: 2}\n      b: {model_id: y, vram_gb: 2}\n"
    )
    planner = planner_for(text, {"cpu": 64})
    assert planner.best({"t": "b"}).selection == {"t": "b"}


# ---------------------------------------------------------------------- status


def test_status_reports_every_device_in_bytes():
    probe = FakeProbe({"cuda:0": 24.0, "cpu": 64.0}, other_gb={"cuda:0": 2.0})
    code, text = run(commands.run_status, as_json=True, probe=probe)
    report = json.loads(text)
    assert code == 0
    assert report["devices"][0] == {
        "device": "cuda:0", "name": "Fake cuda:0", "probe": "fake",
        "total": 24 * GIB, "used": 2 * GIB, "free": 22 * GIB,
    }  # fmt: skip
    code, text = run(commands.run_status, as_json=False, probe=probe)
    assert "cuda:0  Fake cuda:0  fake   24.00 GiB  2.00 GiB  22.00 GiB" in text
    assert "cpu     Fake cpu     fake   64.00 GiB     0 MiB  64.00 GiB" in text


# ---------------------------------------------------------------------- the entry point


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BAD_VALUE, r"models\.yaml:\d+: models\.vision\.options\.b\.vram_gb: expected a number"),
        ("models: [1, 2]\n", "models: expected a mapping"),
        ("models:\n  chat: {options: {a: {model_id: x}}\n", "invalid YAML"),
        ("", "the file is empty"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "plan"])
def test_a_bad_config_exits_2_with_file_line_and_key(
    write_config, capsys, command: str, text: str, message: str
):
    code = cli.main([command, str(write_config(text))])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"vramdeck {command}: error: ")
    assert __import__("re").search(message, err), err


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_a_missing_file_or_a_folder_exits_2(tmp_path, capsys, command: str):
    assert cli.main([command, str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: no such file" in capsys.readouterr().err
    assert cli.main([command, str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys):
    assert cli.main(["validate"]) == 2
    assert "the following arguments are required: CONFIG" in capsys.readouterr().err
    assert cli.main(["plan", "x.yaml", "--limit", "0"]) == 2
    assert cli.main(["status", "--bogus"]) == 2


def test_anything_else_goes_to_the_window_parsed_by_the_same_parser(monkeypatch):
    seen: list[tuple[object, list[str], object]] = []

    @dataclasses.dataclass(frozen=True)
    class WindowOptions:
        config: str | None = None
        screenshot: Path | None = None

    def fake_run(options, qt_args, *, demo_models):
        seen.append((options, qt_args, demo_models))
        return 0

    fake_app = types.ModuleType("vramdeck.gui.app")
    fake_app.run = fake_run  # type: ignore[attr-defined]
    fake_app.WindowOptions = WindowOptions  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vramdeck.gui.app", fake_app)
    argv = ["--config", "x.yaml", "-platform", "offscreen", "--screenshot", "s.png", "-reverse"]
    assert cli.main(argv) == 0
    assert cli.main([]) == 0
    first, second = seen
    assert first[0] == WindowOptions("x.yaml", Path("s.png"))
    assert first[1] == ["-platform", "offscreen", "-reverse"]  # for Qt
    assert first[2] is demo_models  # the panel makes the demo models the manager's way
    assert second[:2] == (WindowOptions(), [])


def test_the_budget_line_says_what_other_processes_take_off_it(write_config):
    path = write_config(FITS.replace(", device: cpu", "").replace("memory_budget_gb: 4", ""))
    probe = FakeProbe({"cuda:0": 10.0, "cpu": 64.0}, other_gb={"cuda:0": 3.0})
    code, out = run(commands.run_validate, str(path), as_json=False, probe=probe)
    # threshold 0.85 (the default): 8.5 GiB for all processes, 3 held by another: 5.5 left
    assert code == 0
    assert "budget 5.50 GiB of 10.00 GiB total (other processes' memory takes 3.00 GiB" in out
    code, out = run(commands.run_plan, str(path), as_json=True, probe=probe)
    cuda = json.loads(out)["devices"]["cuda:0"]
    assert (cuda["budget_gb"], cuda["others_gb"], cuda["taken_by_others_gb"]) == (5.5, 3.0, 3.0)
