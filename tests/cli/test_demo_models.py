"""The demo config's models (vramdeck.manager.demo_models), and the demo as the commands and the
panel see it: the same variables resolved, the same models made, the same options loadable."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from vramdeck import cli, commands
from vramdeck.manager import ModelManager, demo_models
from vramdeck.manager.ledger import Ledger

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"


@pytest.fixture
def tiny_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo's specs, shrunk, so that making them takes milliseconds."""
    specs = {
        "gpt2-small": ("gpt2", {"n_layer": 1, "n_embd": 32, "n_head": 2, "vocab_size": 64, "n_positions": 16}),
        "bert-mini": ("bert", {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                   "intermediate_size": 64, "vocab_size": 64, "num_labels": 3,
                                   "max_position_embeddings": 16}),
    }  # fmt: skip
    monkeypatch.setattr(demo_models, "SPECS", specs)
    monkeypatch.setattr(demo_models, "SPEC_VERSION", json.dumps(specs, sort_keys=True))


def test_demo_models_are_made_once_and_whole(tiny_specs: None, tmp_path: Path) -> None:
    folder = tmp_path / "demo-models"
    stages: list[str] = []
    assert demo_models.ensure_demo_models(folder, stages.append) == folder
    assert demo_models.is_complete(folder)
    assert (folder / "gpt2-small" / "model.safetensors").is_file()
    assert (folder / "bert-mini" / "config.json").is_file()
    assert stages[-1] == "making bert-mini (2/2)"
    assert not list(tmp_path.glob(".demo-models-*"))  # the temporary folder was renamed
    made = (folder / "gpt2-small" / "model.safetensors").stat().st_mtime_ns
    stages.clear()
    demo_models.ensure_demo_models(folder, stages.append)
    assert stages == []  # the second time, nothing is made
    assert (folder / "gpt2-small" / "model.safetensors").stat().st_mtime_ns == made


def test_a_half_made_folder_is_made_again(tiny_specs: None, tmp_path: Path) -> None:
    folder = tmp_path / "demo-models"
    (folder / "gpt2-small").mkdir(parents=True)  # a run killed half way, before the marker
    demo_models.ensure_demo_models(folder)
    assert demo_models.is_complete(folder)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder / "gpt2-small")
    assert sum(p.numel() for p in model.parameters()) > 0


def test_the_environment_points_the_demo_config_at_the_models(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(demo_models.DEMO_ENV, raising=False)
    monkeypatch.delenv(demo_models.MINILM_ENV, raising=False)
    monkeypatch.setenv("VRAMDECK_CACHE_DIR", str(tmp_path))
    demo_models.export_env()
    import os

    assert os.environ[demo_models.DEMO_ENV] == str(tmp_path / "demo-models")
    assert Path(os.environ[demo_models.MINILM_ENV], "config.json").is_file()
    assert demo_models.uses_demo_models(["${VRAMDECK_DEMO_MODELS}/gpt2-small", "org/x"])
    assert not demo_models.uses_demo_models(["org/x"])


def test_a_config_needs_the_models_made_until_they_are(
    tiny_specs: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(demo_models.DEMO_ENV, str(tmp_path / "demo-models"))
    ids = ["${VRAMDECK_DEMO_MODELS}/gpt2-small", "org/x"]
    assert demo_models.folder_to_make(ids) == tmp_path / "demo-models"
    assert demo_models.folder_to_make(["org/x"]) is None  # not the demo: nothing to make
    demo_models.ensure_demo_models()
    assert demo_models.folder_to_make(ids) is None


@pytest.fixture
def demo_env(tiny_specs: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment the `vramdeck` command sets up, for the panel and the commands alike."""
    monkeypatch.delenv(demo_models.DEMO_ENV, raising=False)
    monkeypatch.delenv(demo_models.MINILM_ENV, raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    demo_models.export_env()


def test_validate_and_plan_on_the_demo_agree_with_the_panel(
    demo_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.StringIO()
    commands.run_validate(str(DEMO), as_json=True, out=out)
    assert "making the demo models" in capsys.readouterr().err  # the first run makes them
    validate = json.loads(out.getvalue())
    assert demo_models.folder_to_make(["${VRAMDECK_DEMO_MODELS}/gpt2-small"]) is None
    assert validate["unavailable"] == {}  # every selected demo model can load here
    out = io.StringIO()
    commands.run_plan(str(DEMO), as_json=True, out=out)
    plan = json.loads(out.getvalue())
    assert capsys.readouterr().err == ""  # made once
    skipped = {
        (task, option)
        for task, info in plan["tasks"].items()
        for option, row in info["options"].items()
        if row["unavailable_reason"]
    }
    assert skipped == {("text_generation", "llama-8b-vllm"), ("assistant", "claude")}
    # The panel's bridge reads the same manager: the same options are loadable there (claude is
    # loadable for it until a load finds the key missing; the planner says so before).
    panel = ModelManager(DEMO, ledger=Ledger(None))
    unavailable = {
        (t, o.name) for t, task in panel.tasks.items() for o in task.options.values()
        if not o.available
    }  # fmt: skip
    assert unavailable == {("text_generation", "llama-8b-vllm")}
    selected_gb = sum(r["vram_gb"] for r in validate["model_requirements"].values())
    assert validate["total_required_gb"] == pytest.approx(selected_gb)
    assert os.environ[demo_models.MINILM_ENV]  # the MiniLM resolved for both


def test_demo_models_that_cannot_be_made_are_exit_2_naming_the_folder(
    tiny_specs: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv(demo_models.DEMO_ENV, str(blocker / "demo-models"))
    assert cli.main(["validate", str(DEMO)]) == 2
    err = capsys.readouterr().err
    assert "vramdeck validate: error: " in err
    assert f"could not make the demo models in {blocker / 'demo-models'}" in err
    assert "Traceback" not in err


def test_each_demo_model_has_a_tokenizer_that_fills_its_vocabulary(
    tiny_specs: None, tmp_path: Path
) -> None:
    """Without one nothing can run on them (Try-it, the endpoint); with one, every id a random
    model picks decodes to a word."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vramdeck.manager.inference.service import has_tokenizer
    from vramdeck.manager.inference.text import GenerationRequest, generate_text

    folder = demo_models.ensure_demo_models(tmp_path / "demo-models")
    for name, (_arch, spec) in demo_models.SPECS.items():
        assert has_tokenizer(str(folder / name)), name
        tokenizer = AutoTokenizer.from_pretrained(folder / name)
        assert len(tokenizer) == spec["vocab_size"]
        assert all(str(tokenizer.decode([i])).strip() for i in range(len(tokenizer)))
        assert tokenizer("Unheard-of words, still a prompt")["input_ids"]  # unknown, not empty
    gpt2 = folder / "gpt2-small"
    model = AutoModelForCausalLM.from_pretrained(gpt2)
    tokenizer = AutoTokenizer.from_pretrained(gpt2)
    assert model.config.eos_token_id == tokenizer.eos_token_id
    request = GenerationRequest(messages=(("user", "the camera saw a car"),), max_tokens=6, seed=1)
    out = generate_text(model, tokenizer, request)
    assert out.text.split(), out


def test_a_word_tokenizer_has_exactly_the_ids_asked_for() -> None:
    from vramdeck.manager.demo_tokenizers import GPT2_SPECIALS, word_tokenizer

    big = word_tokenizer(5000, GPT2_SPECIALS)
    assert len(big) == 5000 and len(set(big.get_vocab())) == 5000
    assert big.decode(big("the camera saw")["input_ids"]) == "the camera saw"
    with pytest.raises(ValueError, match="no room"):
        word_tokenizer(2, GPT2_SPECIALS)
