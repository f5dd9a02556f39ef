"""Files that other programs read while syncctl rewrites them: the status page (web
servers) and the metrics file (node_exporter). One mechanism for both.

- :func:`replace`: a temporary file beside the target, filled, made readable by all
  (nothing in these files is secret), then renamed over it: a reader sees the old file or
  the new one, whole.
- :func:`renew_head` and :func:`renew_tail`: an idle tick changes only the first or the
  last bytes of a large file (the last tick's time). Beside the file its previous version
  is kept as a spare (``.NAME.spare``: hidden, and no ``*.prom``/``*.html`` a reader would
  pick up); the tick rewrites the spare's changed bytes and swaps the two names in one
  ``renameat2(RENAME_EXCHANGE)``. Nothing is copied or freed (with 10,000 integrations a
  copy of the page or the metrics file was a tenth to a quarter of the tick). Where the
  kernel or file system cannot exchange, or the spare is not the previous version, the
  spare is made a full copy and renamed over the file, as :func:`replace` does.
- :func:`locked`: one writer at a time per folder (``flock`` on it), since a spare is
  edited in place: a lock-busy tick or ``status-page`` beside ``run-due``.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO


def spare_of(path: Path) -> Path:
    return path.with_name(f".{path.name}.spare")


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``directory`` (waiting for it) while writing there."""
    import fcntl

    held = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield
    finally:
        os.close(held)  # releases the lock


def replace(path: Path, fill: Callable[[BinaryIO], Any], *, temporary: Path | None = None, swap: bool = False) -> None:
    """Fill a temporary file beside ``path`` and rename it over ``path``; with ``swap``,
    exchange the two where the file system can (the previous version stays as
    ``temporary``: the spare)."""
    temporary = temporary or path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as out:
            fill(out)
        os.chmod(temporary, 0o644)  # whatever the umask: a web server or node_exporter reads it
        exchange = _exchange() if swap else None
        if exchange is not None:
            try:
                exchange(temporary, path)
                return
            except OSError:
                pass  # EINVAL: this file system cannot exchange; a plain rename then
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def renew_head(path: Path, previous: BinaryIO, head: bytes, keep_from: int) -> None:
    """Replace ``path`` (open as ``previous``) by ``head`` + its bytes from ``keep_from``
    on. The spare is the previous version when it is the same size (only heads of the same
    length differ between versions): its head is rewritten and swapped in."""
    spare = spare_of(path)
    if _exchange() is not None and len(head) == keep_from:
        size = os.fstat(previous.fileno()).st_size
        if _edit(spare, lambda fd: os.fstat(fd).st_size == size, head, 0) and _swapped(spare, path):
            return
    replace(path, _copy(head, previous, keep_from, os.fstat(previous.fileno()).st_size, b""), temporary=spare,
            swap=True)


def renew_tail(path: Path, previous: BinaryIO, keep: int, tail: bytes) -> None:
    """Replace ``path`` (open as ``previous``) by its first ``keep`` bytes + ``tail``. The
    spare is the previous version when its first line and the bytes before ``keep`` are
    the same as ``previous``'s (the first line names what the body was written from)."""
    spare = spare_of(path)
    if _exchange() is not None:
        previous.seek(0)
        first = previous.readline()
        edge = os.pread(previous.fileno(), min(keep, 64), keep - min(keep, 64))

        def same(fd: int) -> bool:
            return os.pread(fd, len(first), 0) == first and os.pread(fd, len(edge), keep - len(edge)) == edge

        if _edit(spare, same, tail, keep, truncate=True) and _swapped(spare, path):
            return
    replace(path, _copy(b"", previous, 0, keep, tail), temporary=spare, swap=True)


def _edit(path: Path, check: Callable[[int], bool], piece: bytes, at: int, *, truncate: bool = False) -> bool:
    """Write ``piece`` into ``path`` at ``at`` (first cutting it there, with ``truncate``)
    if ``check`` passes on it; False when it does not or the file is missing."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        if not check(fd):
            return False
        if truncate:
            os.ftruncate(fd, at)
        done = 0
        while done < len(piece):
            done += os.pwrite(fd, piece[done:], at + done)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _swapped(spare: Path, path: Path) -> bool:
    try:
        _exchange()(spare, path)  # type: ignore[misc]
    except OSError:
        return False
    return True


def _copy(head: bytes, previous: BinaryIO, start: int, end: int, tail: bytes) -> Callable[[BinaryIO], None]:
    """A writer of ``head``, ``previous``'s bytes from ``start`` to ``end`` (copied by the
    kernel), then ``tail``."""

    def write(out: BinaryIO) -> None:
        out.write(head)
        out.flush()
        offset = start
        while offset < end:
            done = os.sendfile(out.fileno(), previous.fileno(), offset, end - offset)
            if done == 0:
                raise OSError("the previous file shrank while it was copied")
            offset += done
        out.seek(0, os.SEEK_END)
        out.write(tail)

    return write


@functools.cache
def _exchange() -> Callable[[Path, Path], None] | None:
    """``renameat2(RENAME_EXCHANGE)`` from the C library (Linux ≥ 3.15, glibc ≥ 2.28), or
    None; the function raises OSError where the file system refuses."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    at_fdcwd, rename_exchange = -100, 2

    def exchange(one: Path, other: Path) -> None:
        if renameat2(at_fdcwd, os.fsencode(one), at_fdcwd, os.fsencode(other), rename_exchange) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno), str(other))

    return exchange
