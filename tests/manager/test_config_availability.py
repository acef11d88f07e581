"""Options that load as config but cannot load as models: said before trying, with what is needed.

With the real loader registry (transformers is installed here), so the reasons are the ones a
person sees; and `vramdeck validate` as a real process for a server that would listen beyond
loopback.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vramdeck.manager import Ledger, ModelLoadError, ModelManager

pytest.importorskip("transformers", reason="the transformers loader's checks need transformers")


def manager_for(write_config, options: str) -> ModelManager:
    return ModelManager(
        write_config(f"models:\n  t:\n    options:\n{options}"), ledger=Ledger(None)
    )


@pytest.mark.parametrize("quantization", ["4", "gptq", "awq", "fp8", "nf4"])
def test_a_quantization_transformers_cannot_apply_makes_the_option_unavailable(
    write_config, quantization
):
    m = manager_for(write_config, f"      a: {{model_id: org/m, quantization: '{quantization}'}}\n")
    reason = m.tasks["t"].options["a"].unavailable_reason
    assert reason is not None
    assert f"transformers cannot apply quantization {quantization!r}" in reason
    assert "4bit, 8bit, int4, int8" in reason and "vllm or sglang" in reason
    assert m.task_state("t") == "unavailable"


def test_the_quantizations_transformers_applies_are_not_refused_for_that(write_config):
    m = manager_for(write_config, "      a: {model_id: org/m, quantization: 8bit}\n")
    reason = m.tasks["t"].options["a"].unavailable_reason
    assert reason is None or "bitsandbytes" in reason  # only the package can be missing


def test_the_same_quantization_on_a_server_framework_is_not_the_transformers_loaders_call(
    write_config,
):
    m = manager_for(
        write_config, "      a: {model_id: org/m, framework: vllm, quantization: gptq}\n"
    )
    assert "transformers cannot apply" not in (m.tasks["t"].options["a"].unavailable_reason or "")


async def test_a_pt_checkpoint_says_a_loader_plug_in_is_needed_before_trying(
    write_config, tmp_path
):
    weights = tmp_path / "yolov8n.pt"
    weights.write_bytes(b"not really a checkpoint")
    m = manager_for(
        write_config,
        f"      local: {{model_id: '{weights}', framework: pytorch}}\n"
        "      hub: {model_id: yolov8n.pt, framework: pytorch}\n",
    )
    for name in ("local", "hub"):
        reason = m.tasks["t"].options[name].unavailable_reason or ""
        assert "a PyTorch checkpoint (as YOLO ships), not a transformers model" in reason
        assert "loader plug-in" in reason and "'vramdeck.loaders' entry-point group" in reason
    with pytest.raises(ModelLoadError) as caught:
        await m.load_model("t")
    assert "loader plug-in" in str(caught.value) and "huggingface.co" not in str(caught.value)
    assert m.loaded_models == {}
    await m.shutdown()


async def test_a_folder_without_config_json_is_not_a_transformers_model(write_config, tmp_path):
    folder = tmp_path / "detector"
    folder.mkdir()
    (folder / "weights.pt").write_bytes(b"x")
    m = manager_for(write_config, f"      a: {{model_id: '{folder}'}}\n")
    reason = m.tasks["t"].options["a"].unavailable_reason or ""
    assert f"the folder {folder} has no config.json" in reason and "loader plug-in" in reason
    with pytest.raises(ModelLoadError, match=r"has no config\.json"):
        await m.load_model("t")
    await m.shutdown()


def test_a_missing_folder_and_a_hub_id_are_left_to_the_load(write_config, tmp_path):
    # A folder made later (the demo's models) must not be refused when the manager starts.
    m = manager_for(
        write_config,
        f"      later: {{model_id: '{tmp_path / 'made-later'}'}}\n"
        "      hub: {model_id: Qwen/Qwen2.5-0.5B-Instruct}\n",
    )
    assert [o.unavailable_reason for o in m.tasks["t"].options.values()] == [None, None]


SERVER = (
    "models:\n"
    "  chat:\n"
    "    options:\n"
    "      open:\n"
    "        model_id: org/m\n"
    "        framework: vllm\n"
    "        server_command: [vllm, serve, '{model_id}', --host, 0.0.0.0, --port, '{port}']\n"
    "      local:\n"
    "        model_id: org/m\n"
    "        framework: vllm\n"
    "        server_command: [vllm, serve, '{model_id}', '--host={host}', --port, '{port}']\n"
    "inference:\n"
    "  memory_budget_gb: 4\n"
)


def test_a_server_listening_beyond_loopback_loads_as_config_but_is_a_problem(write_config):
    path = write_config(SERVER)
    m = ModelManager(path, ledger=Ledger(None))
    open_, local = m.tasks["chat"].options.values()
    assert "the server must listen on loopback" in (open_.unavailable_reason or "")
    (problem,) = open_.problems
    assert str(problem) == (
        f"{path}:7: models.chat.options.open.server_command[4]: passes the host '0.0.0.0': a "
        "managed server must listen on loopback only (pass {host}, or 127.0.0.1, localhost or "
        "::1); the option cannot load"
    )
    assert local.problems == ()


def test_validate_exits_2_naming_the_line_of_a_non_loopback_host(write_config):
    path = write_config(SERVER)
    run = subprocess.run(
        [sys.executable, "-m", "vramdeck.cli", "validate", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr
    report = json.loads(run.stdout)
    assert len(report["problems"]) == 1 and "passes the host '0.0.0.0'" in report["problems"][0]
    (line,) = run.stderr.splitlines()
    assert line == f"vramdeck validate: error: {report['problems'][0]}"
    assert f"{path}:7: models.chat.options.open.server_command[4]" in line
