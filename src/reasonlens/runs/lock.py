"""One writer at a time per run directory: a lock file, `.reasonlens.lock`, inside it.

The lock holds the writer's pid, host, process start time and the time it was taken; it is
created whole in one step (a hard link of a finished file, or `O_CREAT | O_EXCL` where links are
not possible), so two processes can never both hold it. A second writer is refused, naming the
holder. A lock left by a process that died (its pid is gone from this host, a zombie, or now
belongs to a process started later) is taken over, by one process only (a `.break` file decides
who). Taking the lock opens the directory's ownership session; releasing it closes the session
(see :mod:`reasonlens.runs.ownership`).

A command holds the lock from the moment it may write until it ends: inside a CLI command the
lock is released when the command's click context closes (normally or on an error), in library
code by `holding()` / `RunDir` as a context manager, or at the latest when the process exits.
Processes of one distributed job (torchrun/accelerate ranks other than 0) do not take it: rank 0
holds it for all of them.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError
from reasonlens.runs import ownership

LOCK_FILE = ".reasonlens.lock"
_BREAK_AGE_S = 10.0  # a .break file older than this belongs to a process that died breaking


@dataclass
class _Held:
    path: Path
    info: dict[str, Any]
    pid: int
    created: list[Path]  # directories this lock made, deepest first: removed again if left empty


_HELD: dict[str, _Held] = {}


def _key(path: Path) -> str:
    return str(Path(path).absolute().resolve())


def _start_ticks(pid: int) -> int | None:
    """When process `pid` started (clock ticks since boot), from /proc; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return None


def _me() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "process_start": _start_ticks(os.getpid()),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _follower() -> bool:
    """A rank other than 0 of a distributed job: rank 0 holds the lock for the job."""
    return any(os.environ.get(v, "0") not in ("", "0") for v in ("RANK", "LOCAL_RANK"))


def _read(lock: Path) -> dict | None:
    try:
        info = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and isinstance(info.get("pid"), int) else None


def alive(info: dict) -> bool:
    """Whether the process that wrote `info` may still be running (another host: assume so)."""
    if info.get("host") != socket.gethostname():
        return True
    pid = info["pid"]
    if pid == os.getpid():  # not held here (checked first): left by an earlier process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    if _state(pid) in ("Z", "X"):
        return False
    started = info.get("process_start")
    now = _start_ticks(pid)
    return not (started is not None and now is not None and started != now)


def _describe(path: Path, info: dict) -> str:
    here = info.get("host") == socket.gethostname()
    host = "" if here else f" on host {info.get('host')}"
    gone = "" if here else f" (if that process is gone, delete {Path(path) / LOCK_FILE})"
    return (
        f"{path} is in use by another reasonlens process (pid {info['pid']}{host}, since "
        f"{info.get('since', '?')}); wait for it to finish or choose another --out{gone}"
    )


def holder(path: str | Path) -> dict | None:
    """The live process other than this one that holds `path`'s lock (None: free or stale)."""
    path = Path(path)
    if held_here(path):
        return None
    info = _read(path / LOCK_FILE)
    if info is None:
        lock = path / LOCK_FILE
        if lock.exists() and time.time() - lock.stat().st_mtime < _BREAK_AGE_S:
            return {"pid": "?", "host": socket.gethostname(), "since": "just now"}
        return None
    return info if alive(info) else None


def refuse_if_held(path: str | Path) -> None:
    if _follower():
        return
    info = holder(path)
    if info is not None:
        raise UserError(_describe(Path(path), info))


def held_here(path: str | Path) -> bool:
    held = _HELD.get(_key(Path(path)))
    return held is not None and held.pid == os.getpid()


def _create(lock: Path, info: dict) -> bool:
    """Create `lock` holding `info`, whole, unless it exists. True when created."""
    data = json.dumps(info, indent=2) + "\n"
    tmp = lock.with_name(f"{LOCK_FILE}.{os.getpid()}.{time.monotonic_ns()}")
    try:
        with open(tmp, "x", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, lock)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links here: exclusive create, then write
            pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(data)
    return True


def _break_stale(lock: Path, stale: dict | None) -> None:
    """Remove a stale lock; only the process that creates the `.break` file may."""
    breaker = lock.with_name(f"{LOCK_FILE}.break")
    try:
        fd = os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        with contextlib.suppress(OSError):
            if time.time() - breaker.stat().st_mtime > _BREAK_AGE_S:
                os.unlink(breaker)
        time.sleep(0.05)
        return
    try:
        if _read(lock) == stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(breaker)


def acquire(path: str | Path) -> bool:
    """Take `path`'s lock (creating the directory) and open its ownership session. True when
    this call took it; False when this process holds it already (or is a follower rank).
    Refuses (UserError) while another live process holds it."""
    path = Path(path)
    if _follower() or held_here(path):
        return False
    created = [p for p in [path, *path.absolute().parents] if not p.exists()]
    path.mkdir(parents=True, exist_ok=True)
    lock = path / LOCK_FILE
    info = _me()
    for _ in range(50):
        if _create(lock, info):
            break
        current = _read(lock)
        if current is None:
            with contextlib.suppress(OSError):
                if time.time() - lock.stat().st_mtime < _BREAK_AGE_S:  # being written
                    time.sleep(0.02)
                    continue
        elif alive(current):
            _remove_empty(created)
            raise UserError(_describe(path, current))
        _break_stale(lock, current)
    else:
        _remove_empty(created)
        raise UserError(f"{path}: could not take its lock {lock}; try again")
    _HELD[_key(path)] = _Held(path, info, os.getpid(), created)
    try:
        ownership.open_session(path, info)
    except BaseException:
        release(path)
        raise
    _release_when_done(path)
    return True


def release(path: str | Path) -> None:
    """Close `path`'s ownership session and drop its lock, if this process holds it."""
    held = _HELD.pop(_key(Path(path)), None)
    if held is None or held.pid != os.getpid():
        return
    with contextlib.suppress(OSError, ValueError):
        ownership.close_session(held.path)
    lock = held.path / LOCK_FILE
    with contextlib.suppress(OSError):
        if _read(lock) == held.info:
            os.unlink(lock)
    _remove_empty(held.created)  # a command that wrote nothing leaves no directory behind


def _remove_empty(directories: list[Path]) -> None:
    for directory in directories:
        try:
            directory.rmdir()
        except OSError:
            return


def release_all() -> None:
    for key in list(_HELD):
        release(_HELD[key].path)


atexit.register(release_all)


def _release_when_done(path: Path) -> None:
    """Inside a CLI command: release when the command ends (its click context closes)."""
    for module in ("typer._click.globals", "click"):  # typer >= 0.24 ships its own click
        try:
            ctx = importlib.import_module(module).get_current_context(silent=True)
        except (ImportError, AttributeError):
            continue
        if ctx is not None:
            ctx.call_on_close(lambda: release(path))
            return


@contextlib.contextmanager
def holding(path: str | Path) -> Iterator[Path]:
    """Hold `path`'s lock for the block (released at its end if this call took it)."""
    took = acquire(path)
    try:
        yield Path(path)
    finally:
        if took:
            release(path)
