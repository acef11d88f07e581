"""Entry point of the ``vramdeck`` command.

Sits above both layers: with a subcommand (``validate``, ``plan``, ``status``) it runs the headless
command on the manager and never imports Qt; otherwise it hands every argument to ``gui.app``,
which parses the window's options. So ``manager`` never depends on ``gui``.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

SUBCOMMANDS = ("validate", "plan", "status", "serve")
_HELP = ("-h", "--help")
_VERSION = ("-V", "--version")

_DESCRIPTION = """\
The control panel for the AI models on a GPU workstation. With no command it opens the window;
with a command it answers from a terminal or a script, loading nothing."""

_EPILOG = """\
window options (with no command; the window parses them):
  --config PATH        the models.yaml to open
  --screenshot PATH    save a picture of the window to PATH and quit
  Qt's own options (e.g. -platform offscreen) pass through to Qt
  VRAMDECK_QUIT_AFTER_S=N in the environment closes the window after N seconds

exit codes of the commands:
  0  the selected models fit (plan: a selection that fits exists)
  1  they do not fit (plan: no selection fits)
  2  the config cannot be used (missing, unreadable, invalid) or the command line is wrong

Run `vramdeck COMMAND --help` for a command's options."""


def _package_version() -> str:
    try:
        return version("vramdeck")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The parser of the headless commands (the window's options are parsed by gui.app)."""
    parser = argparse.ArgumentParser(
        prog="vramdeck",
        usage="vramdeck [--config PATH] [--screenshot PATH]\n"
        "       vramdeck {validate,plan,status,serve} ...",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-V", "--version", action="version", version=_package_version())
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")

    validate = commands.add_parser(
        "validate",
        prog="vramdeck validate",
        help="check that the selected models fit their devices' budgets",
        description="Print, per device, the selected models (measured size when known, else "
        "the config's estimate) against the device's budget. Exit 0 when everything fits, 1 "
        "when it does not, 2 when the config cannot be used.",
    )
    validate.add_argument("config", metavar="CONFIG", help="the models.yaml to check")
    validate.add_argument("--json", action="store_true", help="print the report as JSON")

    plan = commands.add_parser(
        "plan",
        prog="vramdeck plan",
        help="which options fit together, and the fitting selection with the largest models",
        description="For each task, list which options fit with the other tasks' current "
        "selections; then search the selection with the largest models that fits every "
        "device (exhaustive up to --limit combinations, greedy above). Exit 0 when a fitting "
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
        "as 'cpu') with its total, used and free memory.",
    )
    status.add_argument(
        "--json", action="store_true", help="print JSON; memory in bytes (total, used, free)"
    )
    from vramdeck.serving.command import add_serve_parser  # light: no aiohttp until it runs

    add_serve_parser(commands)
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
    from vramdeck.manager.config import ConfigError

    try:
        if options.command == "serve":
            from vramdeck.serving.command import run_serve

            return run_serve(options.config, host=options.host, port=options.port)
        if options.command == "validate":
            return commands.run_validate(options.config, as_json=options.json)
        if options.command == "plan":
            limit = options.limit or commands.EXHAUSTIVE_LIMIT
            return commands.run_plan(options.config, as_json=options.json, limit=limit)
        return commands.run_status(as_json=options.json)
    except ConfigError as exc:
        print(f"vramdeck {options.command}: error: {exc}", file=sys.stderr)
        return commands.EXIT_BAD_CONFIG


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and (args[0] in SUBCOMMANDS or args[0] in _HELP or args[0] in _VERSION):
        try:
            return run_command(args)
        except SystemExit as exc:  # --help, --version and usage errors from argparse
            return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    from vramdeck.gui.app import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
