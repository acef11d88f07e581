"""The status bar: the device and the probe reading it, memory used of total, the config, and
progress of long work (making the demo models, shutting down)."""

from __future__ import annotations

import re
import time
from pathlib import PurePath

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar, QWidget

from .formatting import fmt_bytes, fmt_percent
from .records import DeviceInfo, MemorySample

PROBE_NAMES = {"nvml": "NVML", "torch": "torch", "host": "host RAM"}
_PATH = re.compile(r"(?<![\w.])/[^\s()]+")


def fit_message(text: str, width: int, metrics: QFontMetrics) -> str:
    """`text` in `width` pixels: paths shortened to their file names first, then elided in
    the middle (the tooltip keeps the whole text)."""
    if metrics.horizontalAdvance(text) <= width:
        return text
    short = _PATH.sub(lambda m: PurePath(m.group(0)).name or m.group(0), text)
    return metrics.elidedText(short, Qt.TextElideMode.ElideMiddle, max(width, 40))


class StatusBar(QStatusBar):
    """Permanent fields on the right; passing messages on the left."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("statusBar")
        self.progress = QProgressBar(self)
        self.progress.setMaximumWidth(160)
        self.progress.setMaximumHeight(14)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.device_label = QLabel("detecting devices…", self)
        self.probe_label = QLabel(self)
        self.memory_label = QLabel(self)
        self.config_label = QLabel(self)
        for label in (self.device_label, self.probe_label, self.memory_label):
            label.setObjectName("statusField")
        self.addPermanentWidget(self.progress)
        self.addPermanentWidget(self.config_label)
        self.addPermanentWidget(self.device_label)
        self.addPermanentWidget(self.probe_label)
        self.addPermanentWidget(self.memory_label)
        self.device = ""
        self._shown_at = 0.0

    def show_devices(self, devices: list[DeviceInfo], device: str) -> None:
        """Name the device the panel watches, and the probe in use."""
        info = next((d for d in devices if d.device == device), None)
        if info is None:
            return
        self.device = device
        self.device_label.setText(f"{info.name} ({device})")
        self.probe_label.setText(f"probe: {PROBE_NAMES.get(info.probe, info.probe)}")
        # "System RAM (cpu)" beside "probe: host RAM" said the same twice.
        self.probe_label.setVisible(info.probe != "host")
        self.probe_label.setToolTip(
            "NVML reads the whole device (every process); torch only sees CUDA's view; "
            "host RAM is used when there is no NVIDIA device"
        )

    def show_sample(self, sample: MemorySample) -> None:
        """Used / total of the watched device, at most twice a second (no flicker)."""
        if sample.device != self.device or time.monotonic() - self._shown_at < 0.5:
            return
        self._shown_at = time.monotonic()
        self.memory_label.setText(
            f"{fmt_bytes(sample.used)} / {fmt_bytes(sample.total)} used "
            f"({fmt_percent(sample.used, sample.total)})"
        )

    def notify(self, text: str, timeout_ms: int = 6000) -> None:
        """A passing message that fits the room the permanent fields leave it."""
        room = self.width() - sum(
            w.width() + 12 for w in (self.progress, self.config_label, self.device_label,
                                     self.probe_label, self.memory_label) if w.isVisible()
        )  # fmt: skip
        self.showMessage(fit_message(text, room - 24, self.fontMetrics()), timeout_ms)
        self.setToolTip(text)

    def show_config(self, path: str, dirty: bool) -> None:
        name = path.rsplit("/", 1)[-1]
        self.config_label.setText(f"config: {name}{' (changed)' if dirty else ''}")
        self.config_label.setToolTip(path)

    def show_progress(
        self, message: str, done: int | None = None, total: int | None = None
    ) -> None:
        """A message with a progress bar (busy when `total` is None)."""
        self.showMessage(message)
        self.progress.setRange(0, total or 0)
        if total:
            self.progress.setValue(done or 0)
        self.progress.show()

    def end_progress(self, message: str = "", timeout_ms: int = 5000) -> None:
        self.progress.hide()
        if message:
            self.showMessage(message, timeout_ms)
        else:
            self.clearMessage()


__all__ = ["PROBE_NAMES", "StatusBar", "fit_message"]
