"""The one exception type for mistakes a user can fix (bad file, bad argument, degenerate points)."""

from __future__ import annotations

import os


class UserError(Exception):
    """A problem with the user's input, reported as one line and exit code 2 by the CLI.

    Args:
        problem: what is wrong, phrased for the user.
        path: the file or folder concerned, if any; it leads the message.
    """

    def __init__(self, problem: str, path: str | os.PathLike | None = None) -> None:
        self.problem = problem
        self.path = None if path is None else os.fspath(path)
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
