"""Under the memory chart: the legend (bands, lines, marker symbols) and, as nvitop shows
beside its memory bar, the device's utilisation and the processes on it that are not
vramdeck's."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

from .chart_parts import MARKER_LEGEND, MARKER_STYLE
from .formatting import fmt_bytes, fmt_percent
from .records import GpuActivity, GpuProcessInfo, MemorySample

#: Processes named in the line; the rest are counted there and listed in the tooltip.
SHOWN_PROCESSES = 3
NO_NVML = "no NVML here: GPU utilisation and other processes cannot be read"
#: Marker kinds the legend always explains; the tiers' (park, restore, sleep, wake) only while
#: one is in the window: on a machine without a GPU or a server they took a third line at
#: 1366 px, out of the plot's height, for symbols that never appear there.
ALWAYS_EXPLAINED = frozenset({"load", "evict", "unload", "fail"})


class ChartLegend(QLabel):
    """Names what is drawn; its text is set again only when that changes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chartLegend")
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setWordWrap(True)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self._key: tuple[object, ...] = ()

    def show_entries(
        self,
        tasks: Sequence[tuple[str, str]],
        lines: Sequence[tuple[str, str]],
        marker_kinds: Iterable[str] = (),
    ) -> None:
        """`tasks` and `lines` as (colour, name); the symbols of the markers drawn
        (`marker_kinds`) and of loads, evictions, unloads and failures always."""
        explained = ALWAYS_EXPLAINED.union(marker_kinds)
        key = (tuple(tasks), tuple(lines), explained)
        if key == self._key:
            return
        self._key = key
        swatch = "<span style='color:{c}; font-size:14px'>■</span>&nbsp;{t}"  # t: no spaces
        line = "<span style='color:{c}'>━━</span>&nbsp;{t}"
        parts = [swatch.format(c=c, t=t) for c, t in tasks]
        parts += [line.format(c=c, t=t.replace(" ", "&nbsp;")) for c, t in lines]
        parts += [
            f"<span style='color:{MARKER_STYLE[kind][2]}'>{symbol}</span>&nbsp;{text}"
            for kind, (symbol, text) in MARKER_LEGEND.items()
            if kind in explained
        ]
        self.setText(" &nbsp;&nbsp;".join(parts))  # breaks only between entries


def summary_text(device: str, latest: MemorySample) -> str:
    """The line above the plot: the device's use, and the models' of their budget."""
    return (
        f"{device}: {fmt_bytes(latest.used)} of {fmt_bytes(latest.total)} used "
        f"({fmt_percent(latest.used, latest.total)}) · models {fmt_bytes(latest.manager)} "
        f"of {fmt_bytes(latest.limit)} budget"
    )


def activity_text(activity: GpuActivity | None) -> tuple[str, str]:
    """The line under the legend and its tooltip (every process, one a line)."""
    if activity is None:
        return "", ""
    if not activity.nvml:
        return NO_NVML, "NVML (the NVIDIA driver's library) reads utilisation and processes"
    busy = f"{activity.utilisation}%" if activity.utilisation is not None else "not reported"
    head = f"{activity.device} utilisation {busy}"
    if not activity.processes:
        return f"{head} · no other processes on it", ""
    ranked = sorted(activity.processes, key=lambda p: -(p.used or 0))
    names = [_process(p) for p in ranked[:SHOWN_PROCESSES]]
    rest = len(ranked) - SHOWN_PROCESSES
    more = f" and {rest} more" if rest > 0 else ""
    tip = "Other processes on the GPU:\n" + "\n".join(_process(p) for p in ranked)
    return f"{head} · other processes: {', '.join(names)}{more}", tip


def _process(process: GpuProcessInfo) -> str:
    used = fmt_bytes(process.used) if process.used is not None else "size unknown"
    return f"{process.name} (PID {process.pid}) {used}"


class ActivityLine(QLabel):
    """One line: utilisation and the other processes on the chart's device."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chartActivity")
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.hide()

    def show_activity(self, activity: GpuActivity | None) -> None:
        text, tip = activity_text(activity)
        self.setText(text)
        self.setToolTip(tip)
        self.setVisible(bool(text))


__all__ = [
    "ALWAYS_EXPLAINED",
    "NO_NVML",
    "ActivityLine",
    "ChartLegend",
    "activity_text",
    "summary_text",
]
