"""Warm-up for real: load, then one small inference through vramdeck.manager.inference, on real
small models (a GPT-2 with a tokenizer trained here, the real MiniLM, a classifier); the
first-inference latency kept in the ledger beside the load's figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serving.models import save_classifier, save_gpt2
from vramdeck.manager import Ledger, ModelManager, ModelWarmedUp, TaskState, WarmUp


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("warm")
    return {
        "gpt2": save_gpt2(root / "gpt2"),
        "classifier": save_classifier(root / "classifier"),
    }


@pytest.fixture
def config(write_config, models, minilm_path, tiny_models):
    return write_config(
        f"""
        models:
          chat:
            options:
              gpt2: {{model_id: "{models["gpt2"]}", vram_gb: 0.01}}
              untokenized: {{model_id: "{tiny_models["small"]}", vram_gb: 0.01}}
          embed:
            options:
              minilm: {{model_id: "{minilm_path}", vram_gb: 0.09, auto_class: AutoModel}}
          classify:
            options:
              bert: {{model_id: "{models["classifier"]}", vram_gb: 0.01}}
          summarize:
            options:
              claude: {{model_id: claude-sonnet, framework: external_api, provider: anthropic}}
        inference:
          memory_budget_gb: 1.0
        """
    )


async def test_warm_up_loads_runs_one_inference_and_keeps_its_latency(config, tmp_path) -> None:
    ledger_path = tmp_path / "ledger.json"
    m = ModelManager(config, ledger=Ledger(ledger_path))
    warmed: list[ModelWarmedUp] = []
    m.events.subscribe(warmed.append, ModelWarmedUp)
    try:
        assert m.task_status("chat").first_inference_s is None  # never warmed up here
        result = await m.warm_up("chat")
        assert isinstance(result, WarmUp)
        assert result.first_inference_s is not None and result.first_inference_s > 0
        assert result.load_s == m.get_loaded_models()["chat"]["load_duration_s"] > 0
        assert m.task_state("chat") is TaskState.LOADED  # loaded, and no longer held
        status = m.task_status("chat")
        assert status.first_inference_s == result.first_inference_s
        option = m.tasks["chat"].options["gpt2"]
        assert m.ledger.first_inference_s(option, "cpu") == result.first_inference_s
        assert m.ledger.load_s(option, "cpu") == result.load_s  # beside the load time
        (event,) = warmed
        assert (event.task, event.option, event.device) == ("chat", "gpt2", "cpu")
        assert event.first_inference_s == result.first_inference_s and event.error is None

        embedded = await m.warm_up("embed")  # an encoder: one sentence embedded
        assert embedded.first_inference_s is not None and embedded.first_inference_s > 0
    finally:
        await m.shutdown()
    # Kept across runs: the next manager shows it before loading anything.
    again = ModelManager(config, ledger=Ledger(ledger_path))
    try:
        assert again.task_status("chat").first_inference_s == result.first_inference_s
        assert again.task_status("embed").first_inference_s == embedded.first_inference_s
    finally:
        await again.shutdown()


async def test_warmup_models_loads_all_selected_and_warms_up_what_can_run(
    config, monkeypatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    m = ModelManager(config, ledger=Ledger(None))
    warmed: list[ModelWarmedUp] = []
    m.events.subscribe(warmed.append, ModelWarmedUp)
    try:
        await m.warmup_models(force=True)
        assert set(m.loaded_models) == {"chat", "embed", "classify", "summarize"}  # the seed's
        latency = {e.task: e.first_inference_s for e in warmed}
        assert latency["chat"] and latency["embed"]
        # A classifier neither generates nor embeds, an external API is not run here: loaded only.
        assert latency["classify"] is None and latency["summarize"] is None
        assert all(e.error is None for e in warmed)
        assert m.task_status("classify").first_inference_s is None
    finally:
        await m.shutdown()
    assert m.loaded_models == {}


async def test_a_model_without_a_tokenizer_is_loaded_only(config) -> None:
    m = ModelManager(config, ledger=Ledger(None))
    warmed: list[ModelWarmedUp] = []
    m.events.subscribe(warmed.append, ModelWarmedUp)
    try:
        await m.set_selected_model("chat", "untokenized")  # weights, but no tokenizer beside them
        result = await m.warm_up("chat")
        assert result.first_inference_s is None and result.load_s is not None
        assert m.task_state("chat") is TaskState.LOADED
        assert warmed[-1].first_inference_s is None and warmed[-1].error is None
    finally:
        await m.shutdown()


async def test_a_failed_inference_leaves_the_model_loaded_and_says_why(
    config, monkeypatch, caplog
) -> None:
    m = ModelManager(config, ledger=Ledger(None))
    warmed: list[ModelWarmedUp] = []
    m.events.subscribe(warmed.append, ModelWarmedUp)

    async def out_of_memory(task: str, model: object) -> float:
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(m.inference, "warm_up_held", out_of_memory)
    try:
        result = await m.warm_up("chat")
        assert result == WarmUp(load_s=result.load_s, first_inference_s=None)
        assert m.task_state("chat") is TaskState.LOADED  # the load, which it promises, stands
        assert warmed[-1].error == "RuntimeError: CUDA out of memory (simulated)"
        assert "the warm-up inference of chat failed" in caplog.text
        assert m.task_status("chat").first_inference_s is None
    finally:
        await m.shutdown()


async def test_warm_up_of_an_unknown_task_is_the_seeds_error(config) -> None:
    m = ModelManager(config, ledger=Ledger(None))
    try:
        with pytest.raises(ValueError, match="Invalid task type: nope"):
            await m.warm_up("nope")
    finally:
        await m.shutdown()


async def test_warm_up_what_fits_warms_each_model_it_loads(write_config, models, minilm_path):
    """As Warm up all does: each model the plan picks runs its first inference (its latency
    measured), not a load alone."""
    config = write_config(
        f"""
        models:
          chat:
            priority: 3
            options: {{gpt2: {{model_id: "{models["gpt2"]}", vram_gb: 0.01}}}}
          embed:
            options:
              minilm: {{model_id: "{minilm_path}", vram_gb: 0.09, auto_class: AutoModel}}
          classify:
            options: {{bert: {{model_id: "{models["classifier"]}", vram_gb: 0.01}}}}
        inference:
          memory_budget_gb: 0.05
        """
    )
    m = ModelManager(config, ledger=Ledger(None))
    warmed: list[ModelWarmedUp] = []
    m.events.subscribe(warmed.append, ModelWarmedUp)
    try:
        plan = m.preview_warmup().what_fits
        assert "embed" not in plan and "chat" in plan  # the MiniLM alone is over the budget
        assert await m.warmup_what_fits() == list(plan)
        assert [e.task for e in warmed] == list(plan)
        ran = {e.task: e.first_inference_s for e in warmed if e.error is None}
        assert ran.keys() == set(plan)
        assert ran["chat"] and m.task_status("chat").first_inference_s  # it ran, and is kept
        assert ran.get("classify") is None  # as warm_up: saved without a tokenizer, nothing runs
    finally:
        await m.shutdown()
