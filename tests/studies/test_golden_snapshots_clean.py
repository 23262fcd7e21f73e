"""No golden snapshot describes the machine that wrote it: a platform string, a python or torch
version, or an absolute path outside the repository would make the suite pass on one machine
only (and leak where the snapshot was written)."""

from __future__ import annotations

import re

from golden_snapshots import GOLDEN_ROOT

FORBIDDEN = {
    "a platform string": re.compile(r"Linux-|Darwin-|Windows-|macOS-|-with-glibc"),
    "a software version": re.compile(r"python 3\.|torch 2\.", re.IGNORECASE),
    "an absolute path": re.compile(r"/tmp/|/work/|/root/|/home/|/Users/|/private/|pytest-of-"),
}


def test_no_golden_snapshot_names_the_machine_the_software_or_a_path():
    files = sorted(p for p in GOLDEN_ROOT.rglob("*") if p.is_file())
    assert len(files) > 50, "the golden snapshots are missing"
    found = []
    for path in files:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            for what, pattern in FORBIDDEN.items():
                if pattern.search(line):
                    where = path.relative_to(GOLDEN_ROOT)
                    found.append(f"{where}:{number}: {what}: {line.strip()[:120]}")
    assert not found, "\n".join(found)
