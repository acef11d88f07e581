"""Fixtures for the CLI, saving and packaging tests: configs written to a temp folder."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

#: Two tasks on the host, with a 4 GiB cap, so the outcome is the same on any machine with more
#: than 4.5 GiB of RAM, GPU or not: small+a (3 GiB) fits, big+a (5 GiB) does not.
FITS = """\
# vramdeck test config
models:
  chat:
    selected: small   # the default
    options:
      small: {model_id: gpt2, vram_gb: 1, device: cpu}
      big: {model_id: big/model, vram_gb: 3, device: cpu}
      api: {model_id: claude-x, framework: external_api, provider: anthropic}
  vision:
    selected: a
    options:
      a: {model_id: x/a, vram_gb: 2, device: cpu}
      b: {model_id: x/b, vram_gb: 2.5, device: cpu}
inference:
  memory_budget_gb: 4
"""

DOES_NOT_FIT = FITS.replace("selected: small", "selected: big")

#: Nothing fits: every chat option is larger than the budget.
NOTHING_FITS = """\
models:
  chat:
    options:
      huge: {model_id: a/huge, vram_gb: 6, device: cpu}
      giant: {model_id: a/giant, vram_gb: 9, device: cpu}
inference:
  memory_budget_gb: 4
"""

BAD_VALUE = FITS.replace("vram_gb: 2.5", "vram_gb: lots")


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write YAML text (dedented) to a file in tmp_path and return its path."""

    def write(text: str, name: str = "models.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write
