"""Reading a models.yaml safely: bytes → UTF-8 text → Python data, plus the line of every key.

`yaml.safe_load` alone builds only plain data, but it still lets a small file take unbounded time
and memory and it hides mistakes. This reader, one pass of PyYAML's safe loader with checks added
while it composes the node tree, also refuses:

- more than `MAX_BYTES`, and text that is not UTF-8 (binary, UTF-16, a NUL byte);
- nesting deeper than `MAX_DEPTH` (PyYAML's composer recurses: deep input is a RecursionError);
- more than `MAX_NODES` nodes counted with every alias expanded (an "alias bomb" of nested
  anchors is a few lines that expand to billions of nodes; walking them never ends), and an alias
  to the collection it is in (a structure that contains itself);
- a key that is not a plain name (a list or map as a key, or longer than `MAX_KEY_CHARS`);
- the same key twice in one mapping (the loader would keep the last one silently).

Each refusal is a `ConfigSyntaxError` naming the file, the line and the key path.
"""

from __future__ import annotations

import codecs
from typing import Any, NoReturn

import yaml

from .config_errors import ConfigSyntaxError, shorten

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 50_000
MAX_KEY_CHARS = 256

_MERGE_TAG = "tag:yaml.org,2002:merge"
_OTHER_ENCODINGS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def decode(data: bytes, *, file: str) -> str:
    """`data` as text; ConfigSyntaxError unless it is UTF-8. A UTF-8 byte-order mark is kept (as
    U+FEFF, which YAML skips), so that saving the selections writes the file back as it was."""
    if len(data) > MAX_BYTES:
        raise ConfigSyntaxError(
            f"the file is larger than {MAX_BYTES // 1024**2} MiB, the most a config may be "
            "(is it the right file?)",
            file=file,
        )
    for bom, name in _OTHER_ENCODINGS:
        if data.startswith(bom):
            raise ConfigSyntaxError(f"the file is {name} text; save it as UTF-8", file=file, line=1)
    nul = data.find(b"\0")
    if nul >= 0:
        looks_utf16 = data[1::2].count(0) > len(data) // 4 or data[0::2].count(0) > len(data) // 4
        what = "UTF-16 text without a byte-order mark?" if looks_utf16 else "a binary file?"
        raise ConfigSyntaxError(
            f"contains a NUL byte ({what}); expected UTF-8 text",
            file=file,
            line=data.count(b"\n", 0, nul) + 1,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigSyntaxError(
            f"byte 0x{data[exc.start]:02x} is not UTF-8 (a binary file, or text in another "
            "encoding such as Latin-1?); expected UTF-8 text",
            file=file,
            line=data.count(b"\n", 0, exc.start) + 1,
        ) from None


def read_yaml(text: str, *, file: str) -> tuple[Any, dict[str, int]]:
    """(data, lines): `text` parsed by the safe loader within the limits above, and key path →
    1-based line of every key (``models.chat.selected`` → 4). Raises ConfigSyntaxError."""
    if len(text) > MAX_BYTES:
        raise ConfigSyntaxError(
            f"the text is {len(text)} characters; a config is at most {MAX_BYTES}", file=file
        )
    if "\0" in text:
        raise ConfigSyntaxError(
            "contains a NUL character; expected text",
            file=file,
            line=text.count("\n", 0, text.index("\0")) + 1,
        )
    try:
        loader = _BoundedLoader(text)
    except yaml.reader.ReaderError as exc:  # a control character, checked before any parsing
        raise ConfigSyntaxError(
            f"invalid YAML: character {exc.character:#06x} is not allowed in YAML text",
            file=file,
            line=text.count("\n", 0, exc.position) + 1,
        ) from None
    try:
        data = loader.get_single_data()
    except _Refused as exc:
        raise ConfigSyntaxError(exc.message, file=file, line=exc.line, key=exc.key) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = ", ".join(p for p in (exc.context, exc.problem) if p) or "unreadable"
        line: int | None = mark.line + 1 if mark is not None else None
        raise ConfigSyntaxError(
            f"invalid YAML: {problem}", file=file, line=line, key=loader.key_at(line)
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigSyntaxError(f"invalid YAML: {exc}", file=file, key=loader.path()) from None
    except RecursionError:  # a safety net: MAX_DEPTH and MAX_NODES keep PyYAML's recursion short
        raise ConfigSyntaxError("nested too deeply to read", file=file, key=loader.path()) from None
    finally:
        loader.dispose()
    return data, loader.lines


class _Refused(Exception):
    """A limit or rule of this reader broken at a line and key (turned into ConfigSyntaxError)."""

    def __init__(self, message: str, line: int, key: str) -> None:
        super().__init__(message)
        self.message, self.line, self.key = message, line, key


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, counting nodes (aliases expanded) and depth, and checking keys, as it
    composes; it records the line of every key path on the way."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.lines: dict[str, int] = {}
        self._keys: list[str] = []  # the key path to the node being composed
        self._depth = 0  # collections open around the node being composed (keys' included)
        self._nodes = 0  # nodes so far, each alias counted as the nodes it stands for
        self._sizes: dict[int, int] = {}  # id(finished node) → its node count, aliases expanded
        self._node_lines: dict[int, tuple[int, str]] = {}  # id(node) → its line and key path

    def path(self) -> str:
        """The key path being read now (``models.chat.options``, ``….server_command[2]``)."""
        return "".join(
            k if k.startswith("[") or i == 0 else f".{k}" for i, k in enumerate(self._keys)
        )

    def key_at(self, line: int | None) -> str:
        """The key path being read now, or after composing, the deepest key on `line`."""
        if self._keys or line is None:
            return self.path()
        on_line = [key for key, at in self.lines.items() if at == line]
        return max(on_line, key=len, default="")

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # No try/finally: when composing fails, the key path stays as it was at the failure,
        # for the error message.
        child = self._component(parent, index)
        if child is not None:
            self._keys.append(child)
        if self.check_event(yaml.AliasEvent):
            self._count_alias(self.peek_event())  # type: ignore[no-untyped-call]
            node = super().compose_node(parent, index)
        else:
            node = self._compose_counted(parent, index)
        if child is not None:
            self._keys.pop()
        return node

    def _compose_counted(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        if self._depth >= MAX_DEPTH:
            self._refuse(f"nested deeper than {MAX_DEPTH} levels; a config needs far fewer", mark)
        before = self._nodes
        self._add(1, mark)
        self._depth += 1
        node = super().compose_node(parent, index)
        self._depth -= 1
        assert node is not None  # an event was there: PyYAML composes a node for it
        self._sizes[id(node)] = self._nodes - before
        self._node_lines[id(node)] = (node.start_mark.line + 1, self.path())
        if self._keys and self._keys[-1].startswith("["):  # a list item (keys: in their map)
            self.lines.setdefault(self.path(), node.start_mark.line + 1)
        return node

    def _count_alias(self, event: Any) -> None:
        target = self.anchors.get(event.anchor)
        if target is None:
            return  # PyYAML reports the undefined alias
        size = self._sizes.get(id(target))
        if size is None:
            self._refuse(
                f"the alias *{shorten(event.anchor, 40)} refers to a collection that contains "
                "it (a structure that contains itself)",
                event.start_mark,
            )
        self._add(size, event.start_mark, alias=event.anchor)

    def _add(self, nodes: int, mark: Any, alias: str | None = None) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            why = f" (the alias *{shorten(alias, 40)} here stands for {nodes})" if alias else ""
            self._refuse(
                f"the document has more than {MAX_NODES} values with its aliases expanded"
                f"{why}; a config needs far fewer",
                mark,
            )

    def compose_mapping_node(self, anchor: Any) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        # A key's text and its value, each → its line: `1` and '1' are one name once the config
        # reads it as text; `1`, `01` and `true` are one key once YAML builds a dict.
        seen: dict[tuple[str, Any], int] = {}
        for key_node, _ in node.value:
            name, line = self._name(key_node)
            key = f"{self.path()}.{name}" if self._keys else name
            self.lines.setdefault(key, line)
            if key_node.tag == _MERGE_TAG:  # may repeat; merged keys are checked where written
                continue
            text, value = ("text", name), ("value", self.construct_object(key_node))
            first = seen.get(text) or seen.get(value)
            if first is not None:
                raise _Refused(
                    f"duplicate key {shorten(name, 60)!r} (lines {first} and {line}); "
                    "the second would silently replace the first",
                    line,
                    key,
                )
            seen[text] = seen[value] = line
        return node

    def _name(self, key_node: yaml.Node) -> tuple[str, int]:
        """A mapping key's text and line; _Refused unless it is a scalar of a sensible length."""
        if not isinstance(key_node, yaml.ScalarNode):
            self._refuse("a key must be a name, not a list or map", key_node.start_mark)
        name = str(key_node.value)
        if len(name) > MAX_KEY_CHARS:
            self._refuse(
                f"a key of {len(name)} characters; a key is a name of at most {MAX_KEY_CHARS}",
                key_node.start_mark,
            )
        return name, key_node.start_mark.line + 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.MarkedYAMLError as exc:  # e.g. a tag the safe loader does not build
            line, key = self._node_lines.get(id(node), (node.start_mark.line + 1, ""))
            raise _Refused(f"invalid YAML: {exc.problem or exc.context}", line, key) from None
        except (ValueError, TypeError, OverflowError) as exc:
            # A scalar the resolver typed but cannot build: 2024-13-01 (a date), a 5000-digit int.
            line, key = self._node_lines.get(id(node), (node.start_mark.line + 1, ""))
            raise _Refused(f"cannot read the value: {shorten(str(exc), 120)}", line, key) from None

    def _refuse(self, message: str, mark: Any) -> NoReturn:
        raise _Refused(message, mark.line + 1, self.path())

    @staticmethod
    def _component(parent: yaml.Node | None, index: Any) -> str | None:
        """The key-path part of the node composed at `index` in `parent` (None for a key)."""
        if isinstance(parent, yaml.MappingNode) and isinstance(index, yaml.ScalarNode):
            return str(index.value)
        if isinstance(parent, yaml.SequenceNode) and isinstance(index, int):
            return f"[{index}]"
        return None


__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_KEY_CHARS", "MAX_NODES", "decode", "read_yaml"]
