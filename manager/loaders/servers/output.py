"""A server's output as lines: split on every line break (progress bars end lines with \\r),
ANSI colours dropped, secrets masked, and no line without bound."""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence

from vramdeck.manager.logs import redact

#: Lines of a server's output kept for crash and failure reports.
TAIL_LINES = 50
#: Longest line kept; a progress bar without newlines must not grow without bound.
MAX_LINE = 2000

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


class LineSplitter:
    """Bytes → lines: splits on \\n, \\r\\n and \\r (progress bars), drops ANSI colours, and
    masks `secrets` (see `manager.logs.redact`) before a line is cut to MAX_LINE."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""
        self._secrets = tuple(secrets)
        # What an endless line keeps back when it is cut: a secret it may end with the start of.
        self._hold = max(map(len, self._secrets), default=1) - 1

    def feed(self, data: bytes, *, final: bool = False) -> list[str]:
        text = self._partial + self._decoder.decode(data, final=final)
        *lines, self._partial = _LINE_BREAK.split(text)
        if final:
            lines.append(self._partial)
            self._partial = ""
        elif len(self._partial) > MAX_LINE:
            # Cut (and masked) now: a line without end must not grow without bound.
            masked = redact(self._partial, self._secrets)
            cut = max(0, len(masked) - self._hold)
            lines.append(masked[:cut])
            self._partial = masked[cut:]
        cleaned = (redact(_ANSI.sub("", line), self._secrets).rstrip()[:MAX_LINE] for line in lines)
        return [line for line in cleaned if line]
