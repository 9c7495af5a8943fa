"""Per-process copies of a Qdrant Edge shard, for several serving workers on one machine.

Qdrant Edge lets one process open a shard folder; a second opener of the same folder sees the
points as they were when it opened and breaks the first one's flushes (checked with 0.9.0: the
first process's next flush failed on a payload journal the second had rewritten). So the first
worker keeps the shard (the *owner*) and every other worker serves from its own copy in
``<shard>.worker-<pid>-<n>``, made between two of the owner's writes: the owner holds
``<shard>.copylock`` shared while files change, the copier holds it exclusively while it copies.
A copy is kept current by reconciling it with the store
(:class:`pipelines.serving.index_reconciler.IndexReconciler`), is removed when its index
closes, and one whose process died is removed by the next opener of the shard.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import logging
import os
import shutil
import time
from pathlib import Path

logger = logging.getLogger(__name__)

COPY_INFIX = ".worker-"
_CHUNK = 1 << 20
_POLL_S = 0.05
_counter = itertools.count()


def copy_lock_path(shard: Path) -> Path:
    """The file the owner holds shared while it writes and a copier holds exclusively."""
    return shard.with_name(shard.name + ".copylock")


def instance_lock_path(shard: Path) -> Path:
    """The file an open index holds exclusively (one instance per folder)."""
    return shard.with_name(shard.name + ".lock")


def worker_copy_path(shard: Path) -> Path:
    """A new copy folder for this process (the pid names it; the counter keeps two indexes of
    one process apart)."""
    return shard.with_name(f"{shard.name}{COPY_INFIX}{os.getpid()}-{next(_counter)}")


def _copies_of(shard: Path) -> list[Path]:
    if not shard.parent.is_dir():
        return []
    prefix = shard.name + COPY_INFIX
    # Folders only: their lock files carry a further suffix.
    names = (p for p in shard.parent.iterdir() if p.name.startswith(prefix))
    return sorted(p for p in names if "." not in p.name[len(prefix) :])


def remove_copy(copy: Path) -> None:
    """Remove a copy folder and its lock files."""
    shutil.rmtree(copy, ignore_errors=True)
    for lock in (instance_lock_path(copy), copy_lock_path(copy)):
        lock.unlink(missing_ok=True)


def remove_stale_copies(shard: Path) -> list[Path]:
    """Remove the copies of ``shard`` that no open index holds (their process died).

    A copy is stale when its instance lock can be taken: a live index holds it for as long as
    it is open, and the kernel drops it when the process dies (so a reused pid cannot keep a
    dead worker's copy alive).
    """
    removed: list[Path] = []
    for copy in _copies_of(shard):
        lock = instance_lock_path(copy)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # held: a live worker's copy
        try:
            shutil.rmtree(copy, ignore_errors=True)
            copy_lock_path(copy).unlink(missing_ok=True)
            lock.unlink(missing_ok=True)
            removed.append(copy)
        finally:
            os.close(fd)
    if removed:
        names = [p.name for p in removed]
        logger.info("removed %d stale vector index copies: %s", len(removed), names)
    return removed


def _copy_file_sparse(src: Path, dst: Path) -> int:
    """Copy one file, skipping its holes (Qdrant pre-sizes its mmap files and leaves them
    mostly empty); returns the bytes written."""
    written = 0
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        size = os.fstat(fi.fileno()).st_size
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fi.fileno(), pos, os.SEEK_DATA)
                end = os.lseek(fi.fileno(), start, os.SEEK_HOLE)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # only a hole after pos
                    break
                start, end = pos, size  # no hole support here: copy the rest as it is
            while start < end:
                chunk = os.pread(fi.fileno(), min(_CHUNK, end - start), start)
                if not chunk:
                    break
                os.pwrite(fo.fileno(), chunk, start)
                start += len(chunk)
                written += len(chunk)
            pos = end
        fo.truncate(size)
    shutil.copystat(src, dst)
    return written


def _copy_tree(src: Path, dst: Path) -> int:
    written = 0
    for root, dirs, files in os.walk(src):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in dirs:
            (dst / rel / name).mkdir(exist_ok=True)
        for name in files:
            written += _copy_file_sparse(Path(root) / name, dst / rel / name)
    return written


def copy_shard(src: Path, dst: Path, *, wait_s: float) -> bool:
    """Copy the shard folder ``src`` to ``dst`` while its owner is between writes.

    Returns ``False`` (and copies nothing) when ``src`` holds no shard yet, or when the owner
    kept writing for ``wait_s`` seconds (an index build): the caller then builds its copy from
    the store instead.
    """
    lock = copy_lock_path(src)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    logger.warning(
                        "vector index %s: its owner kept writing for %.0f s; not copied",
                        src,
                        wait_s,
                    )
                    return False
                time.sleep(_POLL_S)
        if not (src / "edge_config.json").exists():
            return False
        started = time.perf_counter()
        written = _copy_tree(src, dst)
        logger.info(
            "vector index %s copied to %s: written=%d bytes ms=%.0f",
            src,
            dst.name,
            written,
            (time.perf_counter() - started) * 1000,
        )
        return True
    finally:
        os.close(fd)  # releases the lock
