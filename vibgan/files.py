"""Writing files safely: atomic replacement (temp file in the target folder, fsync, rename) and checksums."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (checksums for fetch manifests and provenance)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to the disk, so a rename after it never exposes an empty file after a crash."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def temp_beside(path: str | os.PathLike) -> Path:
    """A new empty temporary file beside ``path``: ``.<name>.pid<PID>.<random>.tmp``, with the umask's mode.
    The writer's process id in the name lets ``remove_stale_temps`` tell a dead writer's leftovers from a live one's."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.pid{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~umask())
    return Path(name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[tuple[Path, int]]:
    """Delete the temporary files that writers of ``path`` killed without a chance to clean up (SIGKILL, power
    loss) left beside it: those whose process (``temp_beside``'s pid) no longer runs. Returns (file, bytes) removed."""
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    for tmp in path.parent.glob(f".{path.name}.pid*.tmp"):
        pid = tmp.name[len(path.name) + 5:].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        try:
            size = tmp.stat().st_size
            tmp.unlink()
        except OSError:
            continue
        removed.append((tmp, size))
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike, *, tmp_name: str | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to: on success it is fsynced and renamed over ``path`` (readers
    see the old file or the new one, never part of one); on any error it is removed and ``path`` is untouched.

    ``tmp_name``: a fixed temporary name in the same folder (default: a unique one from ``temp_beside``). The
    result gets the permissions any new file gets (the umask), not ``mkstemp``'s 0600.
    """
    path = Path(path)
    parent = path.parent
    if tmp_name is None:
        tmp = temp_beside(path)
    else:
        tmp = parent / tmp_name
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask())
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (``atomic_path``)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
