"""Crash-safe writing: every output goes to a temporary name in the same folder and is renamed into place.

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
import tempfile
from collections.abc import Iterator
from typing import Any

__all__ = [
    "atomic_write",
    "ensure_writable_dir",
    "is_dicom_file",
    "sha256_file",
    "write_text_atomic",
    "write_json_atomic",
]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``, on error it is removed.

    The temporary name keeps the final suffix (``.nii.gz``, ``.csv``) so writers that dispatch on the extension
    work unchanged.
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
