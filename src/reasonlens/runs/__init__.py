"""Run directories, the stage runner, and the one atomic writer every file goes through."""

from reasonlens.runs.files import (
    atomic_save_tensors,
    atomic_write,
    jsonable,
    read_json,
    to_json,
    write_json,
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
    "RUN_FILE",
    "RunDir",
    "Stage",
    "StageRunner",
    "atomic_save_tensors",
    "atomic_write",
    "differing",
    "jsonable",
    "open_staged_run",
    "read_json",
    "read_run",
    "reopen_or_refuse",
    "software_versions",
    "to_json",
    "write_json",
]
