"""Crash-safe writing: every output goes to a temporary name in the same folder and is renamed into place.

Files end with the permissions an ordinary ``open(path, "w")`` would give them: ``0o666`` less the process umask for
a new file, the old file's mode when one is replaced (not the ``0o600`` of a ``tempfile`` name).

Example:
    >>> from hirescam_ext.utils.io import atomic_write
    >>> with atomic_write("/tmp/example.txt") as tmp:  # doctest: +SKIP
    ...     open(tmp, "w").write("done")
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hirescam_ext.utils.errors import InputError

__all__ = [
    "atomic_write",
    "ensure_writable_dir",
    "is_dicom_file",
    "read_json_file",
    "sha256_file",
    "write_text_atomic",
    "write_json_atomic",
]


def _current_umask() -> int:
    """The process umask, read without changing it where Linux reports it (``/proc/self/status``)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)  # no /proc: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def _final_mode(path: str) -> int:
    """Permission bits for ``path`` once written: an existing file's own, else ``0o666 & ~umask``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_current_umask()


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on error it is removed.

    The temporary name keeps the final suffix (``.nii.gz``, ``.csv``) so writers that dispatch on the extension
    work unchanged. The file gets the mode a plain ``open(path, "w")`` would give it: an existing file keeps its
    mode, a new one gets ``0o666`` less the umask (``tempfile`` alone would leave ``0o600``).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    suffix = "".join(s for s in (".nii.gz", ".tar.gz") if base.endswith(s)) or os.path.splitext(base)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{suffix}", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _final_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def ensure_writable_dir(path: str | os.PathLike) -> str:
    """Create the output folder ``path`` if needed and check that files can be created in it.

    Raises:
        InputError: naming the folder when it cannot be created (a file in the way, no permission, read-only disk)
            or written, before any work is done.

    Example:
        >>> ensure_writable_dir("/tmp/hirescam_out")  # doctest: +SKIP
        '/tmp/hirescam_out'
    """
    from hirescam_ext.utils.errors import InputError

    path = os.fspath(path)
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_test.", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        where = f" ({exc.filename})" if exc.filename and os.fspath(exc.filename) != path else ""
        raise InputError(path, f"output folder cannot be created or written: {reason}{where}") from exc
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=indent) + "\n")


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True for a file with the DICOM preamble (``DICM`` at byte 128) or a ``.dcm`` suffix."""
    if os.fspath(path).lower().endswith(".dcm"):
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def read_json_file(path: str | os.PathLike, missing: str = "file not found") -> Any:
    """The JSON content of ``path``.

    Raises:
        InputError: naming the file: ``missing`` when it does not exist, or why it is not readable JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, missing)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"not a readable JSON file ({type(exc).__name__}: {exc})") from exc


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (read in chunks).

    Raises:
        InputError: naming the file when it cannot be read.
    """
    from hirescam_ext.utils.errors import InputError

    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(chunk_size), b""):
                digest.update(block)
    except OSError as exc:
        raise InputError(path, f"cannot read the file to hash it ({exc.strerror or exc})") from exc
    return digest.hexdigest()
