"""The main window's actions, menus and toolbar: one place for names, shortcuts and icons."""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMenu, QStyle, QToolBar

from .bridge import EVICT, RELOAD, UNLOAD_ALL, VALIDATE, WARMUP
from .bridge_contract import WARMUP_FITS


@dataclass
class WindowActions:
    """Every action of the window; `busy_keys` says which bridge command disables which."""

    open_config: QAction
    reload_config: QAction
    save_config: QAction
    warm_up: QAction
    unload_all: QAction
    evict: QAction
    validate: QAction
    export_csv: QAction
    export_jsonl: QAction
    quit: QAction
    windows: dict[int, QAction]
    #: The menus by name ("file", "models", "view"), for parts that add their own actions.
    menus: dict[str, QMenu] = field(default_factory=dict)

    @property
    def busy_keys(self) -> dict[str, list[QAction]]:
        return {
            RELOAD: [self.open_config, self.reload_config],
            WARMUP: [self.warm_up],
            WARMUP_FITS: [self.warm_up],  # "Warm up what fits", asked for by Warm up all
            UNLOAD_ALL: [self.unload_all],
            EVICT: [self.evict],
            VALIDATE: [self.validate],
        }

    def commands(self) -> list[QAction]:
        """The actions that start manager work (all disabled while shutting down)."""
        return [self.open_config, self.reload_config, self.save_config, self.warm_up,
                self.unload_all, self.evict, self.validate]  # fmt: skip


def _action(
    window: QMainWindow,
    text: str,
    shortcuts: list[str],
    tip: str,
    icon: QStyle.StandardPixmap | None,
) -> QAction:
    action = QAction(text, window)
    action.setShortcuts([QKeySequence(s) for s in shortcuts])
    keys = ", ".join(shortcuts)
    action.setToolTip(f"{tip} ({keys})" if keys else tip)
    action.setStatusTip(tip)
    if icon is not None:
        action.setIcon(window.style().standardIcon(icon))
    return action


def build_actions(window: QMainWindow) -> WindowActions:
    """Create the actions, the menu bar and the toolbar of `window`."""
    sp = QStyle.StandardPixmap
    actions = WindowActions(
        open_config=_action(window, "Open config…", ["Ctrl+O"], "Open another models.yaml",
                            sp.SP_DialogOpenButton),
        reload_config=_action(window, "Reload config", ["Ctrl+R", "F5"],
                              "Read the config file again (a bad file keeps the current one)",
                              sp.SP_BrowserReload),
        save_config=_action(window, "Save selections", ["Ctrl+S"],
                            "Write the selected models into the config file (a .bak keeps the "
                            "previous one)", sp.SP_DialogSaveButton),
        warm_up=_action(window, "Warm up all", ["Ctrl+L"], "Load every task's selected model",
                        sp.SP_MediaPlay),
        unload_all=_action(window, "Unload all", ["Ctrl+U"], "Unload every model, pinned too",
                           sp.SP_MediaStop),
        evict=_action(window, "Evict LRU", ["Ctrl+E"],
                      "Evict the least recently used model that is not pinned or in use",
                      sp.SP_TrashIcon),
        validate=_action(window, "Validate budget", ["Ctrl+B"],
                         "Check whether the selected models of all tasks fit together",
                         sp.SP_DialogApplyButton),
        export_csv=_action(window, "Export events as CSV…", [], "Save the shown events", None),
        export_jsonl=_action(window, "Export events as JSON Lines…", [], "Save the shown events",
                             None),
        quit=_action(window, "Quit", ["Ctrl+Q"], "Unload everything and quit", None),
        windows={
            60: _action(window, "Last minute", ["Ctrl+1"], "Chart the last minute", None),
            600: _action(window, "Last 10 minutes", ["Ctrl+2"], "Chart the last 10 minutes", None),
            3600: _action(window, "Last hour", ["Ctrl+3"], "Chart the last hour", None),
        },
    )  # fmt: skip
    _build_menus(window, actions)
    _build_toolbar(window, actions)
    return actions


def _build_menus(window: QMainWindow, a: WindowActions) -> None:
    bar = window.menuBar()
    file_menu = bar.addMenu("&File")
    file_menu.addActions([a.open_config, a.reload_config, a.save_config])
    file_menu.addSeparator()
    file_menu.addActions([a.export_csv, a.export_jsonl])
    file_menu.addSeparator()
    file_menu.addAction(a.quit)
    models = bar.addMenu("&Models")
    models.addActions([a.warm_up, a.unload_all, a.evict])
    models.addSeparator()
    models.addAction(a.validate)
    view = bar.addMenu("&View")
    a.menus.update(file=file_menu, models=models, view=view)
    for action in a.windows.values():
        action.setCheckable(True)
        view.addAction(action)


def _build_toolbar(window: QMainWindow, a: WindowActions) -> None:
    toolbar = QToolBar("Main", window)
    toolbar.setObjectName("mainToolbar")
    toolbar.setMovable(False)
    toolbar.setIconSize(QSize(16, 16))
    toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    toolbar.addActions([a.open_config, a.reload_config, a.save_config])
    toolbar.addSeparator()
    toolbar.addActions([a.warm_up, a.unload_all, a.evict])
    toolbar.addSeparator()
    toolbar.addAction(a.validate)
    window.addToolBar(toolbar)


__all__ = ["WindowActions", "build_actions"]
