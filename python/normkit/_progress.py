"""A dependency-free progress bar on stderr (used by ``bench`` and ``demo``)."""

from __future__ import annotations

import sys


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, one line per step otherwise."""

    def __init__(self, total: int, width: int = 30) -> None:
        self.total, self.width, self.tty, self.last = total, width, sys.stderr.isatty(), ""

    def update(self, done: float, label: str) -> None:
        if not self.tty and label == self.last:
            return
        self.last = label
        fill = int(self.width * done / max(1, self.total))
        line = f"[{'#' * fill}{'.' * (self.width - fill)}] {int(done)}/{self.total} {label}"
        sys.stderr.write(f"\r{line:<100}" if self.tty else line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        self.update(self.total, "done")
        if self.tty:
            sys.stderr.write("\n")
