"""Start the Qt application and the main window."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtWidgets import QApplication

ORGANIZATION = "latent-explorer"
APPLICATION = "latent-explorer"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="latent-explorer",
        description="Watch autoencoders and capsule networks learn. "
        "Run 'latent-explorer train --help' for headless training.",
    )
    parser.add_argument(
        "run_dir", nargs="?", help="open this run directory at start-up"
    )
    parser.add_argument("--train", action="store_true", help="start training at once")
    return parser


def display_problem() -> str | None:
    """Return why no window can open here, or None when one probably can."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return (
        "no display found (DISPLAY and WAYLAND_DISPLAY are unset). Run it in a "
        "desktop session, or use 'latent-explorer train ...' to train without "
        "a window"
    )


def run_app(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.run_dir and not Path(args.run_dir).is_dir():
        parser.error(
            f"{args.run_dir!r} is neither a command ('train') nor a run directory"
        )
    problem = display_problem()
    if problem:
        parser.error(problem)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)

    from explorer.main_window import MainWindow

    window = MainWindow()
    window.show()
    if args.run_dir:
        window.open_run(args.run_dir)
    if args.train:
        window.start_training()
    return app.exec()
