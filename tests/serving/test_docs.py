"""docs/serving.md names every setting, span attribute, metric, route and error code."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from vramdeck.serving import Route, ServeSettings
from vramdeck.serving import telemetry as tm

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
SOURCES = "".join(
    p.read_text(encoding="utf-8") for p in (ROOT / "vramdeck" / "serving").glob("*.py")
)


def test_every_setting_has_a_row():
    missing = [f.name for f in dataclasses.fields(ServeSettings) if f"| `{f.name}` |" not in TEXT]
    assert missing == []


def test_every_span_attribute_and_metric_is_named():
    names = [v for k, v in vars(tm).items() if k.startswith(("ATTR_", "METRIC_"))]
    assert len(names) > 10
    assert [n for n in names if f"`{n}`" not in TEXT] == []


def test_every_route_and_error_code_is_named():
    assert [r.value for r in Route if f"`POST {r.value}`" not in TEXT] == []
    codes = set(re.findall(r'code="([a-z_]+)"', SOURCES))
    assert len(codes) >= 8
    assert [c for c in sorted(codes) if f"`{c}`" not in TEXT] == []


def test_the_readme_points_at_the_serving_doc():
    assert "(docs/serving.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
