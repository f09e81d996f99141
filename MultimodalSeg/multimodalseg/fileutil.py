"""Atomic file writing: a temporary file beside the target, then a rename, so a failed run leaves no partial output.

Temporary files from ``mkstemp`` are private (0600); :func:`publish` gives them the permissions a plainly created
file would have (0666 less the umask) before the rename.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from multimodalseg.errors import UserError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: str | os.PathLike, target: str | os.PathLike) -> None:
    """Give a finished temporary file normal permissions and rename it onto ``target``."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, target)


def temporary_beside(path: Path, suffix: str) -> str:
    """A new empty temporary file in ``path``'s folder (created if needed); UserError when it cannot be made."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise UserError(f"cannot write output ({exc.strerror or exc})", path) from exc
    return tmp


def atomic_write(path: str | os.PathLike, writer: Callable[[str], None], suffix: str | None = None) -> Path:
    """Call ``writer(tmp_path)`` on a temporary file beside ``path`` and rename it onto ``path`` when it succeeds.

    ``suffix`` is the temporary file's suffix (writers such as ``sitk.WriteImage`` pick the format from it);
    ``path``'s own suffixes by default.

    Raises:
        UserError: the folder cannot be created or the writer fails; no partial file is left behind.
    """
    p = Path(path)
    tmp = temporary_beside(p, "".join(p.suffixes) if suffix is None else suffix)
    try:
        writer(tmp)
        publish(tmp, p)
    except UserError:
        Path(tmp).unlink(missing_ok=True)
        raise
    except (RuntimeError, OSError, ValueError) as exc:
        Path(tmp).unlink(missing_ok=True)
        lines = str(exc).strip().splitlines()
        raise UserError(f"cannot write output ({lines[-1].strip() if lines else type(exc).__name__})", p) from exc
    return p


def atomic_write_text(path: str | os.PathLike, text: str, suffix: str | None = None) -> Path:
    """Write ``text`` (UTF-8) atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)

    return atomic_write(path, write, suffix)


def atomic_write_json(path: str | os.PathLike, data: object) -> Path:
    """Write ``data`` as indented JSON atomically."""
    import json

    return atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")
