"""The headless commands: ``validate``, ``plan`` and ``status``.

Each is a report function that returns plain data (what ``--json`` prints) and a printer for
people. Nothing here imports Qt; nothing loads a model. Exit codes: 0 fits (or, for ``plan``, a
fitting selection exists), 1 it does not, 2 the config cannot be used.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from vramdeck.manager.config import GIB, ConfigError
from vramdeck.manager.memory import MemoryProbe, SystemProbe
from vramdeck.manager.model_manager import ModelManager
from vramdeck.planning import EXHAUSTIVE_LIMIT, Planner

EXIT_OK, EXIT_DOES_NOT_FIT, EXIT_BAD_CONFIG = 0, 1, 2


def _gib(nbytes: float) -> float:
    return round(nbytes / GIB, 3)


# ---------------------------------------------------------------------- reports (data)


def validate_report(manager: ModelManager) -> dict[str, Any]:
    """The manager's ``validate_memory_budget()``, plus the config's path and unloadable options."""
    report = manager.validate_memory_budget()
    readings = manager.device_readings()
    for device, plan in report["devices"].items():
        reading = readings.get(device)
        plan["probe"] = reading.probe if reading is not None else None
    return {
        "config": str(manager.config_path),
        **report,
        "unavailable": {
            name: task.get_selected_config().unavailable_reason
            for name, task in manager.tasks.items()
            if task.get_selected_config().unavailable_reason
        },
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
    )
    current = {name: task.selected for name, task in manager.tasks.items()}
    tasks: dict[str, Any] = {}
    for name, options in planner.choices.items():
        rows = {}
        for option, choice in options.items():
            trial = {**current, name: option}
            over = planner.over_budget(trial)
            rows[option] = {
                "model_id": choice.model_id,
                "device": choice.device,
                "gb": _gib(choice.nbytes),
                "measured": choice.measured,
                "external": choice.external,
                "unavailable_reason": choice.unavailable_reason,
                "fits_with_others": not over,
                "over_budget_gb": {d: _gib(b) for d, b in over.items()},
            }
        tasks[name] = {"selected": current[name], "options": rows}
    suggestion = planner.best(current, limit=limit)
    chosen = suggestion.selection
    return {
        "config": str(manager.config_path),
        "devices": {
            d: {
                "name": r.name,
                "probe": r.probe,
                "total_gb": _gib(r.total),
                "budget_gb": _gib(manager.budget_bytes(d, r.total)),
            }
            for d, r in planner.readings.items()
        },
        "current": {
            "selection": current,
            "fits": planner.fits(current),
            "total_gb": _gib(planner.total_bytes(current)),
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


def status_report(probe: MemoryProbe) -> dict[str, Any]:
    """Every device with its probe and memory in bytes."""
    devices = []
    for device in probe.devices():
        r = probe.read(device)
        devices.append(
            {
                "device": device,
                "name": r.name,
                "probe": r.probe,
                "total": r.total,
                "used": r.used,
                "free": r.free,
            }
        )
    return {"probe": probe.name, "devices": devices}


# ---------------------------------------------------------------------- printing (people)


def _table(rows: list[list[str]], out: TextIO, indent: str = "  ") -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        pairs = zip(row, widths, strict=True)
        cells = [c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in pairs]
        print((indent + "  ".join(cells)).rstrip(), file=out)


def _numeric(cell: str) -> bool:
    return cell.replace(".", "", 1).isdigit()


def print_validate(report: Mapping[str, Any], out: TextIO) -> None:
    requirements = report["model_requirements"]
    for device, plan in report["devices"].items():
        verdict = "fits" if plan["fits"] else "DOES NOT FIT"
        print(
            f"{device} — {plan['name']}: budget {plan['budget_gb']:.2f} GiB "
            f"of {plan['total_gb']:.2f} GiB total",
            file=out,
        )
        rows = [["task", "option", "model", "GiB", "from"]]
        for task, gb in plan["tasks"].items():
            req = requirements[task]
            source = "measured" if req["measured"] else "estimate"
            rows.append([task, req["option"], req["model_id"], f"{gb:.2f}", source])
        rows.append(
            [
                "total",
                "",
                "",
                f"{plan['required_gb']:.2f}",
                f"of {plan['budget_gb']:.2f} GiB budget: {verdict}",
            ]
        )
        _table(rows, out)
        print(file=out)
    external = {t: r for t, r in requirements.items() if r["external"]}
    if external:
        print("external APIs (no local memory)", file=out)
        _table(
            [["task", "option", "model"]]
            + [[t, r["option"], r["model_id"]] for t, r in external.items()],
            out,
        )
        print(file=out)
    for task, reason in report["unavailable"].items():
        print(f"note: {task}: the selected option cannot load here: {reason}", file=out)
    if report["valid"]:
        print("OK: the selected models fit every device's budget.", file=out)
    else:
        over = [d for d, p in report["devices"].items() if not p["fits"]]
        print(f"Does not fit: {', '.join(over)} over budget (try `vramdeck plan`).", file=out)


def print_plan(report: Mapping[str, Any], out: TextIO) -> None:
    for device, d in report["devices"].items():
        print(
            f"{device} — {d['name']}: budget {d['budget_gb']:.2f} GiB of {d['total_gb']:.2f} GiB",
            file=out,
        )
    for task, info in report["tasks"].items():
        print(f"\n{task} (selected: {info['selected']})", file=out)
        rows = [["", "option", "model", "GiB", "with the others' selections"]]
        for option, row in info["options"].items():
            mark = "*" if option == info["selected"] else ""
            rows.append([mark, option, row["model_id"], _size(row), _verdict(row)])
        _table(rows, out)
    current = report["current"]
    s = report["suggestion"]
    now = "fits" if current["fits"] else "does not fit"
    print(f"\nCurrent selection: {current['total_gb']:.2f} GiB, {now}.", file=out)
    how = f"{s['search']} search over {s['combinations']} combinations"
    if not s["found"]:
        print(f"No selection fits ({how}).", file=out)
        return
    print(f"Suggested selection ({how}), {s['total_gb']:.2f} GiB in all:", file=out)
    rows = []
    for task, option in s["selection"].items():
        change = s["changes"].get(task)
        rows.append([task, option, f"(now {change['from']})" if change else "(unchanged)"])
    _table(rows, out)


def _size(row: Mapping[str, Any]) -> str:
    return "API" if row["external"] else f"{row['gb']:.2f}"


def _verdict(row: Mapping[str, Any]) -> str:
    if row["unavailable_reason"]:
        return f"cannot load here: {row['unavailable_reason']}"
    if row["fits_with_others"]:
        return "fits"
    over = ", ".join(f"{d} over by {gb:.2f} GiB" for d, gb in row["over_budget_gb"].items())
    return f"does not fit ({over})"


def print_status(report: Mapping[str, Any], out: TextIO) -> None:
    rows = [["device", "name", "probe", "total GiB", "used GiB", "free GiB"]]
    for d in report["devices"]:
        rows.append(
            [
                d["device"],
                d["name"],
                d["probe"],
                *(f"{d[k] / GIB:.2f}" for k in ("total", "used", "free")),
            ]
        )
    _table(rows, out, indent="")


# ---------------------------------------------------------------------- running


def open_manager(config: str, probe: MemoryProbe | None = None) -> ModelManager:
    """A manager on `config` that loads nothing; raises ConfigError for a bad or missing file."""
    if Path(config).is_dir():
        raise ConfigError("is a folder; expected a models.yaml file", file=config)
    return ModelManager(config, probe=probe)


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


def run_status(*, as_json: bool, out: TextIO = sys.stdout, probe: MemoryProbe | None = None) -> int:
    own = probe is None
    active = SystemProbe.detect() if probe is None else probe
    try:
        report = status_report(active)
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
