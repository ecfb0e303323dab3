"""Tests of :mod:`verifier._dotenv`, the one reader of ``.env`` files.

A malformed line is named by file and line number, never by its value (the file holds
``ENCODER_PRIVATE_KEY``); how the settings use what is read is in ``test_settings.py``.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

from verifier import ConfigurationError
from verifier._dotenv import parse_dotenv, read_dotenv


def assert_error_clean(exc: BaseException, secret: str) -> None:
    formatted = "".join(traceback.format_exception(exc))
    for text in (exc, repr(exc), exc.args, formatted):
        assert secret not in str(text)


def test_parse_dotenv_handles_comments_export_quotes_and_blank_lines() -> None:
    text = "\n".join(
        [
            "# a comment",
            "",
            "PLAIN=value",
            "export EXPORTED=yes",
            "export\tTABBED=1",
            "  SPACED  =  padded  ",
            "SINGLE='it is # not a comment \\n'",
            'DOUBLE="line\\nbreak \\"quoted\\" # kept"',
            "INLINE=abc # trailing comment",
            "HASH=abc#def",
            "EMPTY=",
            'QUOTED_COMMENT="x"  # fine',
            "PLAIN=later wins",
        ]
    )
    assert parse_dotenv(text) == {
        "PLAIN": "later wins",
        "EXPORTED": "yes",
        "TABBED": "1",
        "SPACED": "padded",
        "SINGLE": "it is # not a comment \\n",
        "DOUBLE": 'line\nbreak "quoted" # kept',
        "INLINE": "abc",
        "HASH": "abc#def",
        "EMPTY": "",
        "QUOTED_COMMENT": "x",
    }


MALFORMED = [
    ("NO_EQUALS_SIGN", False),
    ("1BAD=s3cretvalue", False),
    ("BAD-NAME=s3cretvalue", False),
    ('ENCODER_PRIVATE_KEY="unterminated', True),
    ("ENCODER_PRIVATE_KEY='unterminated", True),
    ('ENCODER_PRIVATE_KEY="a" trailing', True),
    ("ENCODER_PRIVATE_KEY=half'quoted", True),
]


@pytest.mark.parametrize(("line", "named_key"), MALFORMED)
def test_malformed_line_names_source_and_line_but_not_value(line: str, named_key: bool) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_dotenv(f"# header\nGATEWAY_MONITOR_ENABLED=true\n{line}\n", source="settings.env")
    assert info.value.variable == "settings.env:3"
    value = line.partition("=")[2] or line
    assert_error_clean(info.value, value)
    assert ("ENCODER_PRIVATE_KEY" in str(info.value)) is named_key


@pytest.mark.parametrize(("line", "named_key"), MALFORMED)
def test_malformed_line_in_a_file_names_the_file(
    tmp_path: Path, line: str, named_key: bool
) -> None:
    path = tmp_path / "settings.env"
    path.write_text(f"# header\nGATEWAY_MONITOR_ENABLED=true\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigurationError) as info:
        read_dotenv(path)
    assert info.value.variable == f"{path}:3"
    assert_error_clean(info.value, line.partition("=")[2] or line)
    assert ("ENCODER_PRIVATE_KEY" in str(info.value)) is named_key


def test_a_file_is_read_and_a_missing_file_is_no_configuration(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("GATEWAY_MONITOR_ENABLED=true\nDATABASE_NAME='x'\n", encoding="utf-8")
    assert read_dotenv(path) == {"GATEWAY_MONITOR_ENABLED": "true", "DATABASE_NAME": "x"}
    assert read_dotenv(str(path)) == read_dotenv(path)
    assert read_dotenv(tmp_path / "absent.env") == {}


def test_unreadable_file_names_the_file_and_not_its_text(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_bytes(b"ENCODER_PRIVATE_KEY=s3cret\xff\xfe\n")
    with pytest.raises(ConfigurationError) as info:
        read_dotenv(path)
    assert info.value.variable == str(path)
    assert "UTF-8" in info.value.problem
    assert_error_clean(info.value, "s3cret")
    with pytest.raises(ConfigurationError) as info:
        read_dotenv(tmp_path)  # a directory
    assert info.value.variable == str(tmp_path)
    assert info.value.__cause__ is None and info.value.__suppress_context__
