"""The one JSONL reader (reasonlens.jsonl): records, and errors that name file:line."""

from __future__ import annotations

import pytest

from reasonlens.errors import UserError
from reasonlens.jsonl import iter_jsonl, read_jsonl, scan_jsonl


def test_records_in_order_blank_lines_skipped_and_counted(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n\n  \n{"b": "x\u2028y"}\n[1, 2]\n', encoding="utf-8")
    assert read_jsonl(path) == [{"a": 1}, {"b": "x\u2028y"}, [1, 2]]  # U+2028 is not a line end
    assert [n for n, _ in iter_jsonl(path)] == [1, 4, 5]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": 1}\n{not json\n', r"a.jsonl:2: invalid JSON: .* at column 2; expected X$"),
        (b"\n" + b"[" * 100_000 + b"\n", "a.jsonl:2: invalid JSON: nested too deeply; expected X"),
        (b'{"a": 1}\n{"b": "\xff"}\n', r"a.jsonl:2: not UTF-8 text \(byte 0xff\)"),
    ],
)
def test_a_bad_line_is_named(tmp_path, content, message):
    path = tmp_path / "a.jsonl"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_jsonl(path, "expected X")


def test_a_directory_or_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="is a directory, not a JSONL file"):
        read_jsonl(tmp_path)
    with pytest.raises(UserError, match="cannot read"):
        read_jsonl(tmp_path / "absent.jsonl")


def test_scan_reports_every_bad_line_and_keeps_going(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\nnope\n{"b": 2}\n{"c":\n', encoding="utf-8")
    got = list(scan_jsonl(path))
    assert [n for n, _ in got] == [1, 2, 3, 4]
    assert got[0][1] == {"a": 1} and got[2][1] == {"b": 2}
    assert isinstance(got[1][1], UserError) and str(got[1][1]).startswith("invalid JSON:")
    assert isinstance(got[3][1], UserError)
