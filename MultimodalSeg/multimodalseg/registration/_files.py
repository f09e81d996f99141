"""Atomic file writing shared by the registration writers: a temporary file beside the target, then a rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from multimodalseg.errors import UserError


def atomic_write(path: str | os.PathLike, writer: Callable[[str], None], suffix: str) -> Path:
    """Call ``writer(tmp_path)`` on a temporary file beside ``path`` and rename it onto ``path`` when it succeeds.

    ``suffix`` is the temporary file's suffix (writers such as ``sitk.WriteTransform`` pick the format from it).

    Raises:
        UserError: the folder cannot be created or the writer fails; no partial file is left behind.
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=suffix, dir=p.parent)
        os.close(fd)
    except OSError as exc:
        raise UserError(f"cannot write output ({exc.strerror or exc})", p) from exc
    try:
        writer(tmp)
        os.replace(tmp, p)
    except UserError:
        Path(tmp).unlink(missing_ok=True)
        raise
    except (RuntimeError, OSError, ValueError) as exc:
        Path(tmp).unlink(missing_ok=True)
        lines = str(exc).strip().splitlines()
        raise UserError(f"cannot write output ({lines[-1].strip() if lines else type(exc).__name__})", p) from exc
    return p


def atomic_write_text(path: str | os.PathLike, text: str, suffix: str = ".txt") -> Path:
    """Write ``text`` (UTF-8) atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)

    return atomic_write(path, write, suffix)
