"""Start the Qt application and the main window."""

from __future__ import annotations

import argparse
import logging
import sys

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


def run_app(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
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
