"""Run directories (what each owns, reopen-or-refuse, lock), the stage runner, and the one
atomic writer every file goes through."""

from reasonlens.runs.files import (
    atomic_save_tensors,
    atomic_write,
    jsonable,
    read_json,
    read_state,
    read_state_lines,
    to_json,
    write_json,
)
from reasonlens.runs.lock import LOCK_FILE, acquire, holding, release
from reasonlens.runs.ownership import (
    OWNED_FILE,
    check_out,
    check_out_file,
    check_replaceable,
    clear_run,
)
from reasonlens.runs.rundir import (
    RUN_FILE,
    RunDir,
    differing,
    read_run,
    reopen_or_refuse,
    software_versions,
)
from reasonlens.runs.stages import Stage, StageRunner, open_staged_run

__all__ = [
    "LOCK_FILE",
    "OWNED_FILE",
    "RUN_FILE",
    "RunDir",
    "Stage",
    "StageRunner",
    "acquire",
    "atomic_save_tensors",
    "atomic_write",
    "check_out",
    "check_out_file",
    "check_replaceable",
    "clear_run",
    "differing",
    "holding",
    "jsonable",
    "open_staged_run",
    "read_json",
    "read_run",
    "read_state",
    "read_state_lines",
    "release",
    "reopen_or_refuse",
    "software_versions",
    "to_json",
    "write_json",
]
