"""``GET /v1/models``: one entry per task, OpenAI's fields and vramdeck's beside them; and the
lookup of a request's ``model`` (a task name, or ``task/option``)."""

from __future__ import annotations

from typing import Any

from vramdeck.manager.config import ModelConfig
from vramdeck.manager.inference import Abilities, option_abilities
from vramdeck.manager.model_manager import ModelManager

from .admission import TaskCounts
from .errors import APIError, ErrorType


def task_entry(manager: ModelManager, task: str, counts: TaskCounts | None) -> dict[str, Any]:
    """The /v1/models entry of `task`."""
    config = manager.tasks[task]
    option = config.get_selected_config()
    loaded = manager.get_loaded_models().get(task)
    abilities = option_abilities(option)
    return {
        "id": task,
        "object": "model",
        "created": 0,
        "owned_by": "vramdeck",
        "vramdeck": {
            "state": manager.task_state(task),
            "selected": config.selected,
            "options": list(config.options),
            "model_id": option.model_id,
            "framework": option.framework,
            "device": loaded["device"] if loaded else option.device,
            "measured_bytes": loaded["measured_bytes"] if loaded else None,
            "estimated_bytes": option.vram_bytes,
            "loadable": option.available,
            "unavailable_reason": option.unavailable_reason,
            "servable": abilities.servable,
            "abilities": sorted(a.value for a in abilities.abilities),
            "not_servable_reason": None if abilities.servable else abilities.reason,
            "requests": (counts or TaskCounts()).as_dict(),
        },
    }


def known_task(manager: ModelManager, name: str) -> str:
    """`name` (a task, or ``task/option``) when its task exists; 404 listing the tasks if not."""
    task = name.partition("/")[0]
    if task not in manager.tasks:
        tasks = ", ".join(manager.tasks) or "none"
        raise APIError(404, f"model {name!r} does not exist; the tasks are: {tasks}",
                       type=ErrorType.NOT_FOUND, param="model", code="model_not_found")  # fmt: skip
    return task


def resolve(manager: ModelManager, name: str) -> tuple[str, ModelConfig, Abilities]:
    """The task, its selected option and what it can do, for a request's `name`.

    404 for an unknown task or option (listing the valid ones), 409 for ``task/option`` naming
    an option that is not the selected one, 503 for an option that cannot load here.
    """
    task_name = known_task(manager, name)
    option_name = name.partition("/")[2]
    task = manager.tasks[task_name]
    if option_name and option_name not in task.options:
        options = ", ".join(task.options)
        raise APIError(
            404, f"task {task_name!r} has no option {option_name!r}; its options: {options}",
            type=ErrorType.NOT_FOUND, param="model", code="model_not_found",
        )  # fmt: skip
    if option_name and option_name != task.selected:
        raise APIError(
            409,
            f"task {task_name!r} has {task.selected!r} selected, not {option_name!r}; select "
            f"it in the panel, or send model {task_name!r} to use whichever is selected",
            param="model", code="option_not_selected",
        )  # fmt: skip
    option = task.get_selected_config()
    if option.unavailable_reason:
        raise APIError(
            503, f"{task_name} ({option.name}) cannot load here: {option.unavailable_reason}",
            type=ErrorType.SERVER, code="model_unavailable",
        )  # fmt: skip
    return task_name, option, option_abilities(option)


__all__ = ["known_task", "resolve", "task_entry"]
