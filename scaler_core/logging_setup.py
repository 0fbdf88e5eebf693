"""Logging for every component, configured from --logging-level and --logging-paths."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from typing import Sequence

FORMAT = "[%(levelname)s]%(asctime)s: %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S%z"


def setup_logging(level: str = "INFO", paths: Sequence[str] = ("/dev/stdout",)) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = logging.Formatter(FORMAT, DATE_FORMAT)
    for path in paths:
        if path in ("/dev/stdout", "-"):
            handler = logging.StreamHandler(sys.stdout)
        elif path == "/dev/stderr":
            handler = logging.StreamHandler(sys.stderr)
        else:
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)  # e.g. /var/log/scaler/ on a fresh machine
            handler = logging.handlers.WatchedFileHandler(path)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
    logging.getLogger(__name__).info("logging to %s", tuple(paths))
