"""Saving the panel's selections back to models.yaml: atomically, keeping everything else.

Only the ``selected:`` values change. Each is replaced in the file's text at the position the YAML
parser reports for it, so comments, key order, quoting, indentation, blank lines and anchors stay
byte for byte. (ruamel.yaml's round trip was tried first: it dropped a comment above ``---``,
re-indented blocks, and rewrote ``null`` as nothing.) The result is parsed again and must equal
the old content with the new selections, or nothing is written.

A save writes the previous content to ``<name>.bak`` (one, replaced each time), then the new
content to a temporary file in the same folder, fsyncs it and renames it over the original, so an
interrupted save leaves either the old file or the new one, never a mix. It refuses to overwrite a
file that changed on disk since it was opened (`ConfigChangedOnDisk`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, parse_config
from .config_yaml import MAX_BYTES, decode

#: Mode of files written where none existed before.
NEW_FILE_MODE = 0o644


class ConfigChangedOnDisk(RuntimeError):
    """The file changed on disk since it was opened; saving would overwrite someone's edit.

    Attributes
    ----------
    path : Path
        The configuration file.
    expected_mtime : float | None
        The modification time the caller read when it opened the file.
    actual_mtime : float | None
        Its modification time now, or None when the file is gone.
    """

    def __init__(self, path: Path, expected_mtime: float | None, actual_mtime: float | None):
        self.path, self.expected_mtime, self.actual_mtime = path, expected_mtime, actual_mtime
        if actual_mtime is None:
            what = "was deleted"
        else:
            when = datetime.fromtimestamp(actual_mtime).isoformat(sep=" ", timespec="seconds")
            what = f"was modified at {when}"
        super().__init__(
            f"{path}: {what} since it was opened; reload it, or save again to overwrite it"
        )


def file_mtime(path: str | os.PathLike[str]) -> float:
    """The modification time of `path` (following links), to pass back as `expected_mtime`."""
    return os.stat(path).st_mtime


def atomic_write_text(path: str | os.PathLike[str], text: str, *, mode: int | None = None) -> None:
    """Replace `path` with `text` (UTF-8, newlines as given) so that readers see old or new.

    Writes a temporary file beside it, fsyncs it, renames it over `path` and fsyncs the folder.
    On any failure the temporary file is removed and `path` is untouched. `mode` defaults to the
    existing file's permissions, else `NEW_FILE_MODE`.
    """
    target = Path(os.path.realpath(path))
    if mode is None:
        try:
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = NEW_FILE_MODE
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:  # any failure, cancellation too: no temporary file left, re-raised
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(target.parent)


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not every platform lets a folder be opened for this.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def backup_path(path: str | os.PathLike[str]) -> Path:
    """Where a save keeps the previous content: ``models.yaml`` → ``models.yaml.bak``."""
    p = Path(path)
    return p.with_name(p.name + ".bak")


def save_selections(
    path: str | os.PathLike[str],
    selections: dict[str, str],
    *,
    expected_mtime: float | None = None,
) -> None:
    """Write task → option selections into the config at `path`, changing nothing else.

    Parameters
    ----------
    path
        The models.yaml to update (a link is followed; the file it points to is replaced).
    selections
        Task name → option name; tasks not named keep their selection.
    expected_mtime
        `file_mtime(path)` as read when the file was opened. When given and the file's time
        differs now (or it is gone), nothing is written and `ConfigChangedOnDisk` is raised.
        Pass None to save over whatever is on disk (the selections are applied to that content).

    Raises
    ------
    ConfigChangedOnDisk
        The file changed since `expected_mtime` (or changed during the save).
    ConfigError
        The file cannot be read or parsed, or names no such task or option.
    OSError
        Writing failed; the original file is intact.
    """
    target = Path(os.path.realpath(path))
    try:
        before = target.stat()
    except FileNotFoundError:
        if expected_mtime is not None:
            raise ConfigChangedOnDisk(Path(path), expected_mtime, None) from None
        raise ConfigError("no such file", file=str(path)) from None
    if expected_mtime is not None and before.st_mtime != expected_mtime:
        raise ConfigChangedOnDisk(Path(path), expected_mtime, before.st_mtime)
    try:
        with open(target, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from None
    old = decode(data, file=str(path))  # a ConfigError for a file that is not UTF-8 text
    new = apply_selections(old, selections, file=str(path))
    if new == old:
        return
    now = target.stat()
    if (now.st_mtime_ns, now.st_size) != (before.st_mtime_ns, before.st_size):
        raise ConfigChangedOnDisk(Path(path), before.st_mtime, now.st_mtime)
    mode = before.st_mode & 0o7777
    atomic_write_text(backup_path(target), old, mode=mode)
    atomic_write_text(target, new, mode=mode)


def apply_selections(text: str, selections: Mapping[str, str], *, file: str = "<string>") -> str:
    """`text` with each named task's ``selected:`` set; every other character stays as it was.

    Raises ConfigError for unparsable text, an unknown task or option, or a file whose layout
    cannot be edited in place (the text is then left to the person to edit).
    """
    parse_config(text, file=file)  # the usual errors, with file and line, come first
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    models = _child(root, "models")
    assert isinstance(models, yaml.MappingNode)  # parse_config checked the shape
    edits: list[tuple[int, int, str]] = []
    for task, option in selections.items():
        task_node = _child(models, task)
        if not isinstance(task_node, yaml.MappingNode):
            known = ", ".join(str(k.value) for k, _ in models.value)
            raise ConfigError(
                f"names no task: {task!r}; expected one of {known}", file=file, key="models"
            )
        options = _child(task_node, "options")
        if not isinstance(options, yaml.MappingNode) or _child(options, option) is None:
            known = ", ".join(str(k.value) for k, _ in getattr(options, "value", []))
            raise ConfigError(
                f"names no option: {option!r}; expected one of {known}",
                file=file,
                key=f"models.{task}.selected",
            )
        edits.append(_selection_edit(text, task_node, option))
    new = text
    for start, end, replacement in sorted(edits, reverse=True):
        new = new[:start] + replacement + new[end:]
    _check_only_selections_changed(text, new, selections, file)
    return new


def _child(mapping: yaml.Node | None, key: str) -> yaml.Node | None:
    """The value node of `key` in a mapping node (the last one, as the loader takes it)."""
    found = None
    if isinstance(mapping, yaml.MappingNode):
        for key_node, value_node in mapping.value:
            if str(key_node.value) == key:
                found = value_node
    return found


def _selection_edit(text: str, task: yaml.MappingNode, option: str) -> tuple[int, int, str]:
    """(start, end, replacement) in `text` that makes `task` select `option`."""
    for key_node, value_node in reversed(task.value):
        if key_node.value == "selected":
            if not isinstance(value_node, yaml.ScalarNode) or value_node.style in ("|", ">"):
                start = value_node.start_mark.index
                return start, value_node.end_mark.index, _scalar(option, '"')
            return (
                value_node.start_mark.index,
                value_node.end_mark.index,
                _scalar(option, value_node.style),
            )
    if task.flow_style:
        at = task.start_mark.index + 1  # just after "{"
        return at, at, f"selected: {_scalar(option, None)}, "
    first = task.value[0][0].start_mark
    line_start = first.index - first.column
    return line_start, line_start, " " * first.column + f"selected: {_scalar(option, None)}\n"


def _scalar(value: str, style: str | None) -> str:
    """`value` as a YAML string scalar, in the original quoting style where that is possible."""
    if style == "'" and "\n" not in value:
        return "'" + value.replace("'", "''") + "'"
    if style is None and _plain_is_safe(value):
        return value
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def _plain_is_safe(value: str) -> bool:
    if not value or value != value.strip() or any(c in value for c in "#:{}[],&*!|>'\"%@`\n"):
        return False
    try:
        return bool(yaml.safe_load(f"k: {value}") == {"k": value})
    except yaml.YAMLError:
        return False


def _check_only_selections_changed(
    old: str, new: str, selections: Mapping[str, str], file: str
) -> None:
    expected: Any = copy.deepcopy(yaml.safe_load(old))
    for task, option in selections.items():
        expected["models"][task]["selected"] = option
    try:
        got = yaml.safe_load(new)
    except yaml.YAMLError:
        got = None
    if got != expected:
        raise ConfigError(
            "cannot change the selection in place without changing something else "
            "(an anchor or alias on 'selected'?); edit the file by hand",
            file=file,
        )


__all__ = [
    "ConfigChangedOnDisk",
    "apply_selections",
    "atomic_write_text",
    "backup_path",
    "file_mtime",
    "save_selections",
]
