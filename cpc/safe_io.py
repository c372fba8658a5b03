"""Writes that a planted symbolic link cannot redirect, and one writer per folder.

* :func:`write_atomic`: a new temporary file next to the target (created exclusively, so never
  through a link), flushed to disk, renamed over the target: a link at the target is replaced,
  its target untouched.
* :func:`open_append`: append without following a link at the path (``O_NOFOLLOW``).
* :func:`locked`: an exclusive ``flock`` on a lock file in the folder, released by the OS when
  the process dies; the file holds the holder's process id, which the refusal names.
* :func:`refuse_input_as_output`: an output path that is one of the command's inputs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class UnsafePathError(OSError):
    """An output path is a symbolic link, or one of the command's inputs; the message names it."""


def create_temporary(path: Path, suffix: str = TEMPORARY_SUFFIX) -> tuple[int, Path]:
    """A new file next to ``path`` (mode 0666 under the umask); O_EXCL never opens an existing file or link."""
    for _ in range(100):
        temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file next to {path}")


def write_atomic(path: str | os.PathLike, data: bytes | str, *, suffix: str = TEMPORARY_SUFFIX) -> None:
    """Replace ``path`` by ``data`` (str: UTF-8) in one rename; a link at ``path`` is replaced, not followed.

    The temporary file is ``.<name>.<random><suffix>`` next to ``path``.
    """
    path = Path(path)
    descriptor, temporary = create_temporary(path, suffix)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:  # a full disk says ENOSPC, not which file
            raise OSError(error.errno, f"cannot write {path}: {error.strerror}") from None
        raise


def _no_link(path: Path, error: OSError) -> OSError:
    if error.errno == errno.ELOOP:
        return UnsafePathError(f"{path} is a symbolic link; refusing to write through it (remove the link)")
    return error


def open_append(path: str | os.PathLike, mode: str = "a", **kwargs):
    """``open(path, mode)`` for appending ("a", "ab", "a+b"), refusing a symbolic link at ``path``."""
    path = Path(path)
    try:
        return open(path, mode, opener=lambda name, flags: os.open(name, flags | _NOFOLLOW, 0o666), **kwargs)
    except OSError as error:
        raise _no_link(path, error) from None


@contextlib.contextmanager
def locked(folder: str | os.PathLike, name: str, *, what: str, error: type[Exception]) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (the file ``folder/name``) while the block runs.

    A second holder gets ``error("another <what> is writing to <folder>: <lock> is held by process <pid>")``.
    The OS releases the lock when the process dies (kill -9 included); the file stays.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    path = Path(folder) / name
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, 0o666)
    except OSError as failure:
        raise _no_link(path, failure) from None
    with os.fdopen(descriptor, "r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "unknown"
            raise error(f"another {what} is writing to {folder}: {path} is held by process {holder}") from None
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield


def lock_holder(folder: str | os.PathLike, name: str) -> str | None:
    """The process id written in ``folder/name`` while another process holds that lock; None when nobody does."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        descriptor = os.open(Path(folder) / name, os.O_RDONLY | _NOFOLLOW)
    except OSError:  # no lock file (or a link: locked() reports that)
        return None
    with os.fdopen(descriptor) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "unknown"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def refuse_input_as_output(option: str, out: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """An :class:`UnsafePathError` when ``out`` is (or links to) one of ``inputs``: writing it would destroy the input."""
    out = Path(out)
    for source in inputs:
        if source is None:
            continue
        source = Path(source)
        try:
            same = out.exists() and source.exists() and os.path.samefile(out, source)
        except OSError:
            same = False
        if same or out.resolve() == source.resolve():
            raise UnsafePathError(
                f"{option} {out} is the input {source}; writing it would replace the input: pick another {option}"
            )
