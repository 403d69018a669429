"""Atomic file writes (a reader sees the old file or the new one, never half of one) and a
JSON reader that names the broken file and the fix."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "read_json",
    "remove_stale_temporaries",
]


def read_json(path: Path, fix: str = "") -> Any:
    """The parsed content of the JSON file ``path``.

    Args:
        path: the file.
        fix: what the user can do about a broken file, appended to the error.

    Raises:
        CorruptFileError: the file cannot be read or is not valid JSON (UTF-8).
    """
    from onespike.errors import CorruptFileError

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(
            f"{path} is not valid JSON ({exc})" + (f"; {fix}" if fix else "")
        ) from exc


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    Args:
        path: final destination; its parent directory is created if missing.
        write: writes the complete content to the temporary path it is given.

    Returns:
        The destination path.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{dest.name}.{os.getpid()}.", suffix=".tmp", dir=dest.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, dest)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return dest


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else, or cannot tell: keep its file
    return True


def remove_stale_temporaries(dest: Path) -> list[Path]:
    """Delete the temporary files an interrupted save to ``dest`` left behind.

    :func:`atomic_write` names its temporary ``.<name>.<pid>.<random>.tmp``; a save killed
    before its rename (SIGKILL, power loss) leaves that file. The next save to the same place
    removes every such file whose process no longer runs; a concurrent save's file is kept.

    Returns:
        The files removed.
    """
    removed: list[Path] = []
    prefix = f".{dest.name}."
    try:
        candidates = list(dest.parent.iterdir())
    except OSError:
        return removed
    for candidate in candidates:
        name = candidate.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid_text = name[len(prefix) :].split(".", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        try:
            if candidate.is_dir():
                shutil.rmtree(candidate)
            else:
                candidate.unlink()
        except OSError:
            continue
        removed.append(candidate)
    return removed


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
