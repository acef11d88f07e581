"""Entry point of the ``vramdeck`` command, and its one argument parser.

Sits above both layers. With a subcommand (``validate``, ``plan``, ``status``) it runs the
headless command on the manager and never imports Qt; otherwise it opens the window
(`vramdeck.gui.app`), handing it the parsed window options and the arguments left for Qt. Before
either, it points the demo config's variables at the demo models, so the panel and the commands
see the same config the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import vramdeck

SUBCOMMANDS = ("validate", "plan", "status")
_HELP = ("-h", "--help")
_VERSION = ("-V", "--version")
#: What the window needs beyond a headless install (the ``gui`` extra).
GUI_PACKAGES = ("PySide6", "pyqtgraph", "qasync")
#: Exit status when the reader of our output went away (``vramdeck plan | head``): as for a
#: process that SIGPIPE ended, 128 + 13.
EXIT_BROKEN_PIPE = 141
EXIT_USAGE = 2

_DESCRIPTION = """\
The control panel for the AI models on a GPU workstation. With no command it opens the window;
with a command it answers from a terminal or a script, loading nothing."""

_EPILOG = """\
Qt's own options (e.g. -platform offscreen) pass through to Qt.
VRAMDECK_QUIT_AFTER_S=N in the environment closes the window after N seconds.

exit codes of the commands:
  0  the selected models fit (plan: a selection that fits exists)
  1  they do not fit (plan: no selection fits)
  2  the config cannot be used (missing, unreadable, invalid) or the command line is wrong

Run `vramdeck COMMAND --help` for a command's options."""


def package_version() -> str:
    """The installed distribution's version; in a PyInstaller bundle, which may carry no package
    metadata, the package's own ``__version__`` (a test keeps the two equal)."""
    try:
        return version("vramdeck")
    except PackageNotFoundError:
        return vramdeck.__version__


def window_options() -> argparse.ArgumentParser:
    """The window's options, defined once: a parent of `build_parser` (for --help) and what the
    window's arguments are parsed with (the rest goes to Qt)."""
    window = argparse.ArgumentParser(prog="vramdeck", add_help=False)
    group = window.add_argument_group("window options (with no command)")
    group.add_argument(
        "--config",
        metavar="PATH",
        help="the models.yaml to open (default: the last one opened, else the demo)",
    )
    group.add_argument(
        "--screenshot",
        metavar="PATH",
        type=Path,
        help="save a PNG of the window once the models have warmed up, then quit",
    )
    return window


def build_parser() -> argparse.ArgumentParser:
    """The parser of the `vramdeck` command: the window's options and the subcommands."""
    parser = argparse.ArgumentParser(
        prog="vramdeck",
        usage="vramdeck [--config PATH] [--screenshot PATH]\n"
        "       vramdeck {validate,plan,status} ...",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[window_options()],
    )
    parser.add_argument(
        "-V", "--version", action="version", version=f"vramdeck {package_version()}"
    )
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")

    validate = commands.add_parser(
        "validate",
        prog="vramdeck validate",
        help="check that the selected models fit their devices' budgets",
        description="Print, per device, the selected models (measured size when known, else "
        "the config's estimate) against the device's budget, counting memory other processes "
        "hold. Exit 0 when everything fits, 1 when it does not, 2 when the config cannot be used.",
    )
    validate.add_argument("config", metavar="CONFIG", help="the models.yaml to check")
    validate.add_argument("--json", action="store_true", help="print the report as JSON")

    plan = commands.add_parser(
        "plan",
        prog="vramdeck plan",
        help="which options fit together, and the fitting selection with the largest models",
        description="For each task, list which options fit with the other tasks' current "
        "selections; then search the selection with the largest models that fits every "
        "device (exhaustive up to --limit combinations, greedy above). Options that cannot "
        "load here are listed with the reason and never suggested. Exit 0 when a fitting "
        "selection exists, 1 when none does, 2 when the config cannot be used.",
    )
    plan.add_argument("config", metavar="CONFIG", help="the models.yaml to plan")
    plan.add_argument("--json", action="store_true", help="print the report as JSON")
    plan.add_argument(
        "--limit",
        type=_positive_int,
        default=None,
        metavar="N",
        help="search exhaustively up to N combinations, greedily above (default 50000)",
    )

    status = commands.add_parser(
        "status",
        prog="vramdeck status",
        help="devices and their memory",
        description="Print every device (CUDA devices through NVML or torch, and system RAM "
        "as 'cpu') with its total, used and free memory; with CONFIG, also what that config's "
        "models may hold on each device now.",
    )
    status.add_argument(
        "config", metavar="CONFIG", nargs="?", help="a models.yaml whose budgets to show"
    )
    status.add_argument(
        "--json", action="store_true", help="print JSON; memory in bytes (total, used, free)"
    )
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 1, got {text}")
    return value


def run_command(args: list[str]) -> int:
    """Run a headless command; returns the exit code (argparse exits 2 on a bad command line)."""
    options = build_parser().parse_args(args)
    from vramdeck import commands
    from vramdeck.manager import demo_models
    from vramdeck.manager.config import ConfigError

    demo_models.export_env()
    try:
        if options.command == "validate":
            return commands.run_validate(options.config, as_json=options.json)
        if options.command == "plan":
            limit = options.limit or commands.EXHAUSTIVE_LIMIT
            return commands.run_plan(options.config, as_json=options.json, limit=limit)
        return commands.run_status(options.config, as_json=options.json)
    except ConfigError as exc:
        print(f"vramdeck {options.command}: error: {exc}", file=sys.stderr)
        return commands.EXIT_BAD_CONFIG


def run_window(args: list[str]) -> int:
    """Open the panel; exit 2 with what to install when this is a headless install."""
    options, qt_args = window_options().parse_known_args(args)
    try:
        from vramdeck.gui.app import WindowOptions, run
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in GUI_PACKAGES:
            raise
        print(
            f"vramdeck: the window needs {missing}, which is not installed here (a headless "
            "install). Install the panel with: pip install 'vramdeck[gui]'\n"
            "The headless commands work without it: vramdeck validate | plan | status.",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from vramdeck.manager import demo_models

    demo_models.export_env()
    window = WindowOptions(config=options.config, screenshot=options.screenshot)
    return run(window, qt_args, demo_models=demo_models)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and (args[0] in SUBCOMMANDS or args[0] in _HELP or args[0] in _VERSION):
            try:
                return run_command(args)
            except SystemExit as exc:  # --help, --version and usage errors from argparse
                return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
            finally:
                sys.stdout.flush()  # here, so that a closed pipe is caught below
        return run_window(args)
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _silence_stdout() -> None:
    """The reader is gone: point stdout at /dev/null, so the interpreter's last flush at exit
    does not fail again with a second BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (a test's StringIO)
        pass
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
