"""The headless commands: ``validate``, ``plan`` and ``status``.

Each is a report function that returns plain data (what ``--json`` prints) and a printer for
people. Nothing here imports Qt; nothing loads a model (a config that uses the demo's models has
them made first, as the panel does). The figures come from `vramdeck.manager.planning`, the
planner the panel's budget view uses. Exit codes: 0 fits (or, for ``plan``, a fitting selection
exists), 1 it does not, 2 the config cannot be used.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from vramdeck.manager import demo_models
from vramdeck.manager.config import GIB, ConfigError, load_config
from vramdeck.manager.memory import MemoryProbe, SystemProbe
from vramdeck.manager.model_manager import ModelManager
from vramdeck.manager.planning import (
    EXHAUSTIVE_LIMIT,
    Planner,
    device_rooms,
    held_bytes,
)

EXIT_OK, EXIT_DOES_NOT_FIT, EXIT_BAD_CONFIG = 0, 1, 2


def _gib(nbytes: float) -> float:
    return round(nbytes / GIB, 3)


# ---------------------------------------------------------------------- reports (data)


def validate_report(manager: ModelManager) -> dict[str, Any]:
    """The manager's ``validate_memory_budget`` report for the selected models (from one reading
    of the devices), plus the config's path, the selected options that cannot load here, and
    the mistakes in the file that make an option unusable (`config_problems`)."""
    report = manager.validate_memory_budget()
    return {
        "config": str(manager.config_path),
        **report,
        "unavailable": report["skipped"],
        "problems": config_problems(manager),
    }


def config_problems(manager: ModelManager) -> list[str]:
    """Mistakes in the file that leave it loadable but an option unusable, one line each (file,
    line, key): a server_command listening beyond loopback. `validate` exits 2 for them."""
    return [
        str(problem)
        for task in manager.tasks.values()
        for option in task.options.values()
        for problem in option.problems
    ]


def plan_report(manager: ModelManager, *, limit: int = EXHAUSTIVE_LIMIT) -> dict[str, Any]:
    """Per task, which options fit with the others' selections; and the best fitting selection."""
    planner = Planner.from_tasks(
        manager.tasks,
        manager.device_readings(),
        manager.inference_config,
        manager.ledger.measured_bytes,
        held=held_bytes(manager.get_loaded_models()),
    )
    current = {name: task.selected for name, task in manager.tasks.items()}
    tasks: dict[str, Any] = {}
    for name, options in planner.choices.items():
        rows = {}
        for option, choice in options.items():
            loadable = choice.skip_reason is None
            over = planner.option_over_budget(current, name, option) if loadable else {}
            rows[option] = {
                "model_id": choice.model_id,
                "device": choice.device,
                "gb": _gib(choice.nbytes),
                "measured": choice.measured,
                "external": choice.external,
                "unavailable_reason": choice.skip_reason,
                "fits_with_others": loadable and not over,
                "over_budget_gb": {d: _gib(b) for d, b in over.items()},
            }
        tasks[name] = {"selected": current[name], "options": rows}
    suggestion = planner.best(current, limit=limit)
    chosen = suggestion.selection
    warmup = manager.preview_warmup()
    return {
        "config": str(manager.config_path),
        "devices": {
            d: {
                "name": r.name,
                "probe": r.probe,
                "total_gb": _gib(r.total),
                "budget_gb": _gib(r.budget),
                "others_gb": _gib(r.others),
                "taken_by_others_gb": _gib(r.taken_by_others),
            }
            for d, r in planner.rooms.items()
        },
        "current": {
            "selection": current,
            "fits": planner.fits(current),
            "total_gb": _gib(planner.total_bytes(current)),
            "skipped": planner.skipped(current),
            "warmup": {
                "fits": warmup.fits,
                "summary": warmup.summary,
                "evicts": [e.task for e in warmup.evictions],
                "what_fits": list(warmup.what_fits),
            },
        },
        "tasks": tasks,
        "suggestion": {
            "search": suggestion.search,
            "combinations": suggestion.combinations,
            "found": chosen is not None,
            "selection": chosen,
            "changes": {
                t: {"from": current[t], "to": o}
                for t, o in (chosen or {}).items()
                if current[t] != o
            },
            "total_gb": _gib(suggestion.total_bytes),
            "devices": (
                {d: p.as_dict() for d, p in planner.placement(chosen).items()} if chosen else {}
            ),
        },
    }


def status_report(probe: MemoryProbe, config: str | None = None) -> dict[str, Any]:
    """Every device with its probe and memory in bytes; with `config`, also each device's
    ``budget``: what that config's models may hold there now, counting other processes."""
    readings = {device: probe.read(device) for device in probe.devices()}
    rooms = device_rooms(readings, load_config(config).inference) if config else {}
    devices = []
    for device, r in readings.items():
        row: dict[str, Any] = {
            "device": device,
            "name": r.name,
            "probe": r.probe,
            "total": r.total,
            "used": r.used,
            "free": r.free,
        }
        if config:
            row["budget"] = rooms[device].budget if device in rooms else None
        devices.append(row)
    report: dict[str, Any] = {"probe": probe.name, "devices": devices}
    return {"config": config, **report} if config else report


# ---------------------------------------------------------------------- printing (people)


def size(gb: float) -> str:
    """A size for people: MiB below 1 GiB (as the panel's table shows it), else GiB."""
    return f"{gb:.2f} GiB" if abs(gb) >= 1 else f"{gb * 1024:.0f} MiB"


def _table(rows: list[list[str]], out: TextIO, indent: str = "  ") -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        pairs = zip(row, widths, strict=True)
        cells = [c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in pairs]
        print((indent + "  ".join(cells)).rstrip(), file=out)


def _numeric(cell: str) -> bool:
    number = cell.removesuffix(" GiB").removesuffix(" MiB")
    return number.replace(".", "", 1).isdigit()


def _device_line(device: str, d: Mapping[str, Any]) -> str:
    line = f"{device} — {d['name']}: budget {size(d['budget_gb'])} of {size(d['total_gb'])} total"
    if d.get("taken_by_others_gb"):
        line += f" (other processes' memory takes {size(d['taken_by_others_gb'])} of it)"
    return line


def print_validate(report: Mapping[str, Any], out: TextIO) -> None:
    requirements = report["model_requirements"]
    skipped = report["skipped"]
    for device, plan in report["devices"].items():
        verdict = "fits" if plan["fits"] else "DOES NOT FIT"
        print(_device_line(device, plan), file=out)
        rows = [["task", "option", "model", "size", "from"]]
        for task, gb in plan["tasks"].items():
            req = requirements[task]
            source = "measured" if req["measured"] else "estimate"
            rows.append([task, req["option"], req["model_id"], size(gb), source])
        rows.append(
            [
                "total",
                "",
                "",
                size(plan["required_gb"]),
                f"of {size(plan['budget_gb'])} budget: {verdict}",
            ]
        )
        _table(rows, out)
        print(file=out)
    external = {t: r for t, r in requirements.items() if r["external"] and t not in skipped}
    if external:
        print("external APIs (no local memory)", file=out)
        _table(
            [["task", "option", "model"]]
            + [[t, r["option"], r["model_id"]] for t, r in external.items()],
            out,
        )
        print(file=out)
    for task, reason in skipped.items():
        print(f"note: {task}: the selected option cannot load here (not counted): {reason}",
              file=out)  # fmt: skip
    if report["valid"]:
        print("OK: the selected models fit every device's budget.", file=out)
    else:
        over = [d for d, p in report["devices"].items() if not p["fits"]]
        print(f"Does not fit: {', '.join(over)} over budget (try `vramdeck plan`).", file=out)


def print_plan(report: Mapping[str, Any], out: TextIO) -> None:
    for device, d in report["devices"].items():
        print(_device_line(device, d), file=out)
    for task, info in report["tasks"].items():
        print(f"\n{task} (selected: {info['selected']})", file=out)
        rows = [["", "option", "model", "size", "with the others' selections"]]
        for option, row in info["options"].items():
            mark = "*" if option == info["selected"] else ""
            rows.append([mark, option, row["model_id"], _option_size(row), _verdict(row)])
        _table(rows, out)
    current = report["current"]
    s = report["suggestion"]
    now = "fits" if current["fits"] else "does not fit"
    print(f"\nCurrent selection: {size(current['total_gb'])}, {now}.", file=out)
    for task, reason in current["skipped"].items():
        print(f"  {task} is not counted: its selected option cannot load here ({reason})",
              file=out)  # fmt: skip
    warmup = current["warmup"]
    print(f"Warm-up preview: {warmup['summary']}.", file=out)
    if not warmup["fits"]:
        print(f"  Warm up what fits would load: {', '.join(warmup['what_fits']) or 'nothing'}.",
              file=out)  # fmt: skip
    how = f"{s['search']} search over {s['combinations']} combinations"
    if not s["found"]:
        print(f"No selection fits ({how}).", file=out)
        return
    print(f"Suggested selection ({how}), {size(s['total_gb'])} in all:", file=out)
    rows = []
    for task, option in s["selection"].items():
        change = s["changes"].get(task)
        rows.append([task, option, f"(now {change['from']})" if change else "(unchanged)"])
    _table(rows, out)


def _option_size(row: Mapping[str, Any]) -> str:
    return "API" if row["external"] else size(row["gb"])


def _verdict(row: Mapping[str, Any]) -> str:
    if row["unavailable_reason"]:
        return f"cannot load here: {row['unavailable_reason']}"
    if row["fits_with_others"]:
        return "fits (no local memory)" if row["external"] else "fits"
    over = ", ".join(f"{d} over by {size(gb)}" for d, gb in row["over_budget_gb"].items())
    return f"does not fit ({over})"


def print_status(report: Mapping[str, Any], out: TextIO) -> None:
    with_budget = "config" in report
    header = ["device", "name", "probe", "total", "used", "free"]
    rows = [header + (["budget"] if with_budget else [])]
    for d in report["devices"]:
        cells = [d["device"], d["name"], d["probe"]]
        cells += [size(d[k] / GIB) for k in ("total", "used", "free")]
        if with_budget:
            cells.append("—" if d["budget"] is None else size(d["budget"] / GIB))
        rows.append(cells)
    if with_budget:
        print(f"budgets under {report['config']} (what its models may hold now)", file=out)
    _table(rows, out, indent="")


# ---------------------------------------------------------------------- running


def open_manager(config: str, probe: MemoryProbe | None = None) -> ModelManager:
    """A manager on `config` that loads nothing; raises ConfigError for a bad or missing file.

    A config that uses the demo's models has them made first (once, as the panel does), so the
    commands see the demo as the panel does: loadable, with the same measured sizes.
    """
    _check_file(config)
    tasks = load_config(config).tasks.values()
    folder = demo_models.folder_to_make(o.model_id for t in tasks for o in t.options.values())
    if folder is not None:
        print(f"vramdeck: making the demo models in {folder} (first run only)…", file=sys.stderr)
        try:
            demo_models.ensure_demo_models(folder)
        except OSError as exc:  # a folder that cannot be written: the config cannot be used
            message = f"could not make the demo models in {folder}: {exc}"
            raise ConfigError(message, file=config) from exc
    return ModelManager(config, probe=probe)


def _check_file(config: str) -> None:
    if Path(config).is_dir():
        raise ConfigError("is a folder; expected a models.yaml file", file=config)


def run_validate(
    config: str, *, as_json: bool, out: TextIO = sys.stdout, probe: MemoryProbe | None = None
) -> int:
    manager = open_manager(config, probe)
    try:
        report = validate_report(manager)
    finally:
        asyncio.run(manager.shutdown())
    _emit(report, as_json, print_validate, out)
    for problem in report["problems"]:
        print(f"vramdeck validate: error: {problem}", file=sys.stderr)
    if report["problems"]:
        return EXIT_BAD_CONFIG
    return EXIT_OK if report["valid"] else EXIT_DOES_NOT_FIT


def run_plan(
    config: str,
    *,
    as_json: bool,
    limit: int = EXHAUSTIVE_LIMIT,
    out: TextIO = sys.stdout,
    probe: MemoryProbe | None = None,
) -> int:
    manager = open_manager(config, probe)
    try:
        report = plan_report(manager, limit=limit)
    finally:
        asyncio.run(manager.shutdown())
    _emit(report, as_json, print_plan, out)
    return EXIT_OK if report["suggestion"]["found"] else EXIT_DOES_NOT_FIT


def run_status(
    config: str | None = None,
    *,
    as_json: bool,
    out: TextIO = sys.stdout,
    probe: MemoryProbe | None = None,
) -> int:
    if config is not None:
        _check_file(config)
        load_config(config)  # a bad config is exit 2 before any device is read
    own = probe is None
    active = SystemProbe.detect() if probe is None else probe
    try:
        report = status_report(active, config)
    finally:
        if own:
            active.close()
    _emit(report, as_json, print_status, out)
    return EXIT_OK


def _emit(report: Mapping[str, Any], as_json: bool, printer: Any, out: TextIO) -> None:
    if as_json:
        json.dump(report, out, indent=2, ensure_ascii=False)
        print(file=out)
    else:
        printer(report, out)


__all__ = [
    "EXHAUSTIVE_LIMIT",
    "EXIT_BAD_CONFIG",
    "EXIT_DOES_NOT_FIT",
    "EXIT_OK",
    "config_problems",
    "open_manager",
    "plan_report",
    "print_plan",
    "print_status",
    "print_validate",
    "run_plan",
    "run_status",
    "run_validate",
    "status_report",
    "validate_report",
]
