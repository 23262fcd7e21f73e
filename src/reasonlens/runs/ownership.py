"""What a run directory owns, so that `--overwrite` deletes exactly that and nothing a user put
there; and the checks every `--out` goes through before anything is written.

A directory reasonlens writes into keeps a record, `.reasonlens-owned` (JSON), of the files and
folders it wrote there (relative paths). A command writing into the directory holds it through a
*session* (opened when the directory's lock is taken, see :mod:`reasonlens.runs.lock`): while it
is open, or after its process died, whatever appeared since it opened is the run's (third-party
writers such as a Trainer's checkpoints cannot all be told apart); what was there already and
not in the record (a user's file) stays foreign. Closing the session (when the command ends)
writes the full list. So a file the user adds to a finished run is never in the record, and
`--overwrite` refuses, naming it.

`--overwrite` (:func:`clear_run`) deletes file by file what the record names, then the folders
it names once empty; it never calls `rmtree` and never follows a symbolic link, and it refuses
the current directory, a directory holding it, the home directory, `/`, a directory that is not
a reasonlens run, and a run holding anything reasonlens did not write.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reasonlens.errors import UserError
from reasonlens.runs.files import atomic_write, to_json

OWNED_FILE = ".reasonlens-owned"
OWNED_FORMAT = "reasonlens-owned"
#: Top-level names reasonlens keeps for itself in a run directory (record, lock, temporary
#: files of the atomic writer for them): never a run's content, never a user's.
BOOKKEEPING_PREFIXES = (".reasonlens", "..reasonlens")
#: Files whose presence says "a reasonlens run made before runs kept a record".
_RUN_MARKERS = ("run.json", "meta.json", "manifest.json", "stages.json")


def is_bookkeeping(name: str) -> bool:
    return name.startswith(BOOKKEEPING_PREFIXES)


# --- where a run may go ----------------------------------------------------------------------


def _special(path: Path, flag: str) -> str | None:
    """Why `path` can never be a run directory (None: it can): the current directory, one that
    holds it, the home directory, the root."""
    if str(path) in ("", "."):
        return f"{flag} is the current directory ('.' or ''); give the run a directory of its own"
    resolved = path.expanduser().absolute().resolve()
    if resolved == Path(resolved.anchor):
        return f"{flag} {path} is the root directory; give the run a directory of its own"
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the current directory was deleted: nothing can be inside it
        cwd = None
    if cwd is not None and resolved == cwd:
        return (
            f"{flag} {path} is the current directory; give the run a directory of its own "
            "(e.g. --out runs/NAME)"
        )
    if cwd is not None and resolved in cwd.parents:
        return f"{flag} {path} holds the current directory; give the run a directory of its own"
    with contextlib.suppress(RuntimeError, KeyError):
        if resolved == Path.home().resolve():
            return f"{flag} {path} is your home directory; give the run a directory of its own"
    return None


def _writable_dir_problem(path: Path, flag: str) -> str | None:
    """Why a directory cannot be made or written at `path` (None: it can)."""
    for parent in path.absolute().parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                return f"{flag} {path} lies under {parent}, which is a file, not a directory"
            break
    if path.exists():
        if not path.is_dir():
            return f"{flag} {path} is a file, not a directory"
        if not os.access(path, os.W_OK | os.X_OK):
            return f"{flag} {path} is not writable"
        return None
    existing = next(p for p in path.absolute().parents if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot create {flag} {path}: {existing} is not writable"
    return None


def check_out(path: str | Path | None, flag: str = "--out") -> Path | None:
    """Refuse (UserError, nothing written) an output directory no run can use: '' or the
    current directory, one holding it, the home directory, `/`, a file, a path under a file,
    a directory that cannot be written. None (no --out given) passes."""
    if path is None:
        return None
    if isinstance(path, str) and not path.strip():
        raise UserError(f"{flag} is empty (an unset variable?); give the run a directory")
    path = Path(path)
    problem = _special(path, flag) or _writable_dir_problem(path, flag)
    if problem:
        raise UserError(problem)
    return path


def check_out_file(
    path: str | Path, flag: str, keep: Iterable[str | Path | None] = (), owned=None
) -> Path:
    """Refuse an output *file* that cannot be written, that is one of the files in `keep` (the
    command's inputs), or that exists and is not a file reasonlens wrote (`owned(path)` says
    whether it is)."""
    path = Path(path)
    if str(path) in ("", "."):
        raise UserError(f"{flag} is empty or the current directory; give a file name")
    for parent in path.absolute().parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise UserError(f"{flag} {path} lies under {parent}, which is a file")
            break
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory; give a file name")
    existing = next(p for p in path.absolute().parents if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: {existing} is not writable")
    if path.exists():
        for other in keep:
            if other is not None and Path(other).exists() and os.path.samefile(path, other):
                raise UserError(f"{flag} {path} is the input file {other}; give another file")
        if not os.access(path, os.W_OK):
            raise UserError(f"{flag} {path} is not writable")
        if owned is not None and not owned(path):
            raise UserError(
                f"{flag} {path} already exists and is not a file reasonlens wrote; "
                "give another file (or move it away)"
            )
    return path


# --- the record -------------------------------------------------------------------------------


def read_record(path: Path) -> dict | None:
    try:
        record = json.loads((Path(path) / OWNED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != OWNED_FORMAT:
        return None
    return record


def _write_record(path: Path, files, dirs, session: dict | None) -> None:
    record = {
        "format": OWNED_FORMAT,
        "version": 1,
        "about": "what reasonlens wrote here; --overwrite deletes exactly this, nothing else",
        "files": sorted(files),
        "dirs": sorted(dirs),
        "session": session,
    }
    atomic_write(Path(path) / OWNED_FILE, to_json(record))


def entries(path: Path) -> list[tuple[str, bool]]:
    """Every entry under `path` as (relative POSIX path, is a real directory), parents before
    their contents, without following symbolic links; top-level bookkeeping left out."""
    path = Path(path)
    if not path.is_dir():
        return []
    found: list[tuple[str, bool]] = []

    def walk(directory: Path, prefix: str) -> None:
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            return
        for name in names:
            if not prefix and is_bookkeeping(name):
                continue
            rel = f"{prefix}{name}"
            full = directory / name
            real_dir = full.is_dir() and not full.is_symlink()
            found.append((rel, real_dir))
            if real_dir:
                walk(full, f"{rel}/")

    walk(path, "")
    return found


def has_content(path: Path) -> bool:
    """Whether `path` holds anything besides reasonlens' bookkeeping."""
    path = Path(path)
    if not path.is_dir():
        return path.exists()
    return any(not is_bookkeeping(name) for name in os.listdir(path))


def _under(rel: str, tops: Iterable[str]) -> bool:
    return any(rel == top or rel.startswith(f"{top}/") for top in tops)


def _split(path: Path, record: dict | None) -> tuple[list[tuple[str, bool]], list[str]]:
    """(owned entries, foreign entries: the topmost of what reasonlens did not write)."""
    listed: set[str] = set()
    session_foreign: list[str] | None = None
    if record is not None:
        listed = set(record.get("files", [])) | set(record.get("dirs", []))
        session = record.get("session")
        if session:  # open (this process) or its process died: what appeared since is the run's
            session_foreign = list(session.get("foreign", []))
    owned: list[tuple[str, bool]] = []
    foreign: list[str] = []
    for rel, is_dir in entries(path):
        if _under(rel, foreign):
            continue
        name = rel.rsplit("/", 1)[-1]
        mine = (
            rel in listed
            or ("/" in rel and is_bookkeeping(name))  # a nested run's own record and lock
            or (session_foreign is not None and not _under(rel, session_foreign))
        )
        (owned.append((rel, is_dir)) if mine else foreign.append(rel))
    return owned, foreign


def foreign_entries(path: Path) -> list[str]:
    """What under `path` reasonlens did not write (topmost entries; [] for an empty or absent
    directory, everything for a directory with no record)."""
    return _split(Path(path), read_record(Path(path)))[1]


def shown(path: Path, names: list[str]) -> str:
    """'NAME' (a folder: 'NAME/'), plus ' and N more', for the first of `names` in `path`."""
    full = Path(path) / names[0]
    first = names[0] + ("/" if full.is_dir() and not full.is_symlink() else "")
    more = f" and {len(names) - 1} more" if len(names) > 1 else ""
    return f"{first}{more}"


def is_legacy_run(path: Path) -> bool:
    """A run written before runs kept a record of their files."""
    path = Path(path)
    return read_record(path) is None and any((path / m).is_file() for m in _RUN_MARKERS)


def replace_problem(path: str | Path, flag: str = "--out") -> str | None:
    """Why `--overwrite` may not clear `path` (None: it may; an absent or empty directory
    needs no clearing)."""
    path = Path(path)
    special = _special(path, flag)
    if special:
        return f"refusing to --overwrite: {special}"
    if not path.exists() and not path.is_symlink():
        return None
    if not path.is_dir() or path.is_symlink():
        return f"{path} is not a directory reasonlens wrote; --overwrite replaces only a run"
    record = read_record(path)
    owned, foreign = _split(path, record)
    if not foreign:
        return None
    if record is None and is_legacy_run(path):
        return (
            f"{path} was written by an older reasonlens that kept no record of its files, so "
            "--overwrite cannot tell them from yours; delete it yourself or choose another --out"
        )
    if record is None:
        return (
            f"{path} is not a reasonlens run (it holds {shown(path, foreign)}); "
            "--overwrite replaces only a reasonlens run: choose another --out"
        )
    return (
        f"{path} holds {shown(path, foreign)}, which reasonlens did not write; --overwrite "
        "replaces only what reasonlens wrote: move it away or choose another --out"
    )


def check_replaceable(path: str | Path, flag: str = "--out") -> None:
    problem = replace_problem(path, flag)
    if problem:
        raise UserError(problem)


def clear_run(path: str | Path, flag: str = "--out") -> None:
    """Delete what reasonlens wrote in `path` (checked first: refuses anything else), keeping
    the directory itself and its bookkeeping; the record then owns nothing."""
    path = Path(path)
    check_replaceable(path, flag)
    if not path.is_dir():
        return
    record = read_record(path)
    owned, foreign = _split(path, record)
    if foreign:  # appeared since the check
        check_replaceable(path, flag)
    for rel, is_dir in owned:
        if not is_dir:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path / rel)
    left = []
    for rel, _ in sorted((e for e in owned if e[1]), key=lambda e: -e[0].count("/")):
        try:
            os.rmdir(path / rel)
        except FileNotFoundError:
            pass
        except OSError:
            left.append(rel)
    session = (record or {}).get("session")
    if session is not None:
        session = {**session, "foreign": []}
    _write_record(path, [], left, session)
    if left:
        raise UserError(f"{path}: could not remove {left[0]}/ (something new appeared in it)")


def remove_run(path: str | Path, flag: str = "--out") -> None:
    """:func:`clear_run`, then the emptied directory itself (it must hold nothing else)."""
    path = Path(path)
    clear_run(path, flag)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path / OWNED_FILE)
    try:
        path.rmdir()
    except OSError:
        raise UserError(f"{path}: could not remove it (it is in use, or not empty)") from None


# --- sessions ---------------------------------------------------------------------------------


def open_session(path: Path, holder: dict[str, Any]) -> None:
    """Start writing into `path` (its lock is held): fold a dead session into the record and
    note what is there that the run does not own, so it is never claimed."""
    path = Path(path)
    record = read_record(path)
    owned, foreign = _split(path, record)
    files = [rel for rel, is_dir in owned if not is_dir]
    dirs = [rel for rel, is_dir in owned if is_dir]
    _write_record(path, files, dirs, {**holder, "foreign": foreign})


def close_session(path: Path) -> None:
    """Finish writing into `path`: the record lists everything the run owns now."""
    path = Path(path)
    record = read_record(path)
    if record is None or not path.is_dir():
        return
    owned, _ = _split(path, record)
    files = [rel for rel, is_dir in owned if not is_dir]
    dirs = [rel for rel, is_dir in owned if is_dir]
    if not files and not dirs:  # it owns nothing: leave no trace
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path / OWNED_FILE)
        return
    _write_record(path, files, dirs, None)


def claim_all(path: Path) -> None:
    """Record everything now in `path` as written by reasonlens (a directory it just made,
    e.g. a merged checkpoint, before it is renamed into place)."""
    found = entries(Path(path))
    _write_record(path, [r for r, d in found if not d], [r for r, d in found if d], session=None)
