"""Entry point of the ``latent-explorer`` command.

``latent-explorer train ...`` trains headless and never imports Qt;
``latent-explorer [RUN_DIR]`` opens the window, optionally on a run directory.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "train":
        from core.cli import train_command

        return train_command(argv[1:])
    from explorer.app import run_app

    return run_app(argv)


if __name__ == "__main__":
    sys.exit(main())
