"""Entry point of the ``vramdeck`` command.

Sits above both layers: it hands the window's arguments to ``gui.app`` and, later, headless
subcommands to the manager, so that ``manager`` never depends on ``gui``.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    from gui.app import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
