"""The README and docs name every config key, every command and every span and metric the code has."""

from __future__ import annotations

from pathlib import Path

import pytest

from vramdeck.manager import telemetry
from vramdeck.manager.config import InferenceConfig, ModelConfig, TaskConfig

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize(
    "key", sorted(ModelConfig.KNOWN | TaskConfig.KNOWN | InferenceConfig.KNOWN | {"models"})
)
def test_the_config_reference_has_a_row_for_every_key(key: str):
    readme = DOCS.parent / "README.md"
    assert f"| `{key}` |" in readme.read_text(encoding="utf-8")


def test_the_cli_doc_covers_every_command_and_exit_code():
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for heading in ("## `vramdeck validate", "## `vramdeck plan", "## `vramdeck status"):
        assert heading in text


def test_the_telemetry_doc_names_every_span_and_metric():
    text = (DOCS / "telemetry.md").read_text(encoding="utf-8")
    names = [v for k, v in vars(telemetry).items() if k.startswith(("SPAN_", "METRIC_", "ATTR_"))]
    assert names
    missing = [n for n in names if f"`{n}`" not in text]
    assert missing == []
