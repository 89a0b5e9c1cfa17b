"""The numbered-line reader shared by the readers and the checker: file:line for every problem."""

from __future__ import annotations

import re

import pytest

from src.data.errors import DatasetError, decode_text, numbered_lines, read_bytes, split_lines


def test_numbered_lines_skip_blank_lines_and_count_every_line_break(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"one\n\n  \r\ntwo\rthree\n")
    assert list(numbered_lines(path)) == [
        ("one", f"{path}:1"),
        ("two", f"{path}:4"),
        ("three", f"{path}:5"),
    ]
    assert split_lines("one\n\n  \r\ntwo\rthree\n") == ["one", "", "  ", "two", "three"]


def test_non_utf8_line_is_a_dataset_error_with_file_and_line(tmp_path):
    path = tmp_path / "labels.json"
    path.write_bytes(b'{"a": 1}\n{"la\xffes": 2}\n')
    lines = numbered_lines(path)
    assert next(lines) == ('{"a": 1}', f"{path}:1")
    expected = f"{path}:2: expected UTF-8 text, got byte 0xff at column 5"
    with pytest.raises(DatasetError, match=re.escape(expected)):
        next(lines)
    with pytest.raises(DatasetError, match=re.escape(expected)):
        decode_text(path.read_bytes(), path)


def test_problems_list_collects_bad_lines_and_reading_goes_on(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"a\n\xc3(\nc\n")
    problems: list[str] = []
    assert [text for text, _ in numbered_lines(path, problems)] == ["a", "c"]
    assert problems == [f"{path}:2: expected UTF-8 text, got byte 0xc3 at column 1"]
    problems.clear()
    assert list(numbered_lines(tmp_path / "none.txt", problems)) == []
    assert problems == [f"file {tmp_path / 'none.txt'} does not exist"]


def test_unreadable_file_is_a_dataset_error_naming_it(tmp_path):
    with pytest.raises(DatasetError, match=re.escape(f"cannot read label file {tmp_path}")):
        read_bytes(tmp_path, "label file")
    with pytest.raises(DatasetError, match="cannot read file"):
        list(numbered_lines(str(tmp_path / "a\0b")))
    with pytest.raises(DatasetError, match="custom missing"):
        read_bytes(tmp_path / "none", missing="custom missing")
