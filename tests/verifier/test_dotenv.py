"""Tests of :mod:`verifier._dotenv`, the one reader of ``.env`` files.

A malformed line is named by file and line number, never by its value (the file holds
``ENCODER_PRIVATE_KEY``); how the settings use what is read is in ``test_settings.py``.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest

from verifier import ConfigurationError
from verifier._dotenv import parse_dotenv, read_dotenv, shown_name


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
        "DOUBLE": 'line\nbreak \\"quoted\\" # kept',  # as Node's dotenv: \\" stays
        "INLINE": "abc",
        "EMPTY": "",
        "QUOTED_COMMENT": "x",
    }


#: Texts and what Node's dotenv makes of them: ``require('dotenv').parse(text)``, run by
#: dotenv 16.6.1 and 17.4.2 (identical on every one; session 39's differential test of about
#: 66,000 texts, helper-119). The oracle is Node's output, written down, not this reader.
NODE_DOTENV = [
    ('APP_A=1', {'APP_A': '1'}),
    ('APP_A = 1 ', {'APP_A': '1'}),
    ('\tAPP_A\t=\t1\t', {'APP_A': '1'}),
    ('export APP_A=1', {'APP_A': '1'}),
    ('export\t APP_A=1', {'APP_A': '1'}),
    ('export=1', {'export': '1'}),
    ('APP_A=b=c', {'APP_A': 'b=c'}),
    ('APP_A=a b  c', {'APP_A': 'a b  c'}),
    ('APP_A=abc # comment', {'APP_A': 'abc'}),
    ("APP_A=abc #'quote in comment'", {'APP_A': 'abc'}),
    ('APP_A=#', {'APP_A': ''}),
    ('APP_A=#x', {'APP_A': ''}),
    ('APP_A = # c', {'APP_A': ''}),
    ('  # indented\nAPP_A=1', {'APP_A': '1'}),
    ('APP_A=1\nAPP_A=2', {'APP_A': '2'}),
    ('APP_A=1\r\nX_B=2', {'APP_A': '1', 'X_B': '2'}),
    ('APP_A=1\rX_B=2', {'APP_A': '1', 'X_B': '2'}),
    ('APP_A=\nX_B=2', {'APP_A': '', 'X_B': '2'}),
    ("APP_A='x' # c", {'APP_A': 'x'}),
    ('APP_A="x"#c', {'APP_A': 'x'}),
    ("APP_A= \t'x'\t ", {'APP_A': 'x'}),
    ("APP_A='a # b'", {'APP_A': 'a # b'}),
    ('APP_A=" a # b "', {'APP_A': ' a # b '}),
    ('APP_A="a\\nb"', {'APP_A': 'a\nb'}),
    ("APP_A='a\\nb'", {'APP_A': 'a\\nb'}),
    ('APP_A=a\\nb', {'APP_A': 'a\\nb'}),
    ('APP_A="a\\tb"', {'APP_A': 'a\\tb'}),
    ('APP_A="a\\\\b"', {'APP_A': 'a\\\\b'}),
    ('APP_A="a\\\\nb"', {'APP_A': 'a\\\nb'}),
    ('APP_A="a\\"b"', {'APP_A': 'a\\"b'}),
    ('APP_A="x\\""', {'APP_A': 'x\\"'}),  # an escaped quote, then the closing one
    ("APP_A='it\\'s'", {'APP_A': "it\\'s"}),
    ('APP_A="say \\"hi\\" # kept" # c', {'APP_A': 'say \\"hi\\" # kept'}),
    ('APP_A="a\\\\" # c"', {'APP_A': 'a\\\\" # c'}),
    ("APP_A=''#", {'APP_A': ''}),
    ('APP_A=x`y`', {'APP_A': 'x`y`'}),
    ('APP_A=\xa0x\xa0', {'APP_A': 'x'}),
    ('APP_A=x\xa0#c', {'APP_A': 'x'}),
    ('APP_A=\u200bx\u200b', {'APP_A': '\u200bx\u200b'}),
    ('APP_A=http://h/p #frag', {'APP_A': 'http://h/p'}),
    ('APP_A="http://h/#x"', {'APP_A': 'http://h/#x'}),
    ('\xa0APP_A=1', {'APP_A': '1'}),
]


@pytest.mark.parametrize(("text", "node"), NODE_DOTENV)
def test_what_it_accepts_it_reads_as_nodes_dotenv_does(text: str, node: dict[str, str]) -> None:
    assert parse_dotenv(text) == node


@pytest.mark.parametrize(("text", "node"), [
    # Node's reading of each, which this reader refuses rather than differ from silently.
    ("APP_A=abc#def", {"APP_A": "abc"}),
    ("MONGODB_URI=mongodb://u:p#ss@h/db", {"MONGODB_URI": "mongodb://u:p"}),
    ("APP_A=http://h:1/p?q=1#frag", {"APP_A": "http://h:1/p?q=1"}),
    ("APP_A=x\ufeff", {"APP_A": "x"}),
    ("APP_A=\ufeffx", {"APP_A": "x"}),
    ("__proto__=x", {}),
])
def test_what_nodes_dotenv_reads_otherwise_is_refused_by_line(
        text: str, node: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_dotenv(f"APP_OK=1\n{text}", source="settings.env")
    assert info.value.variable == "settings.env:2"
    assert "p#ss" not in str(info.value) and "frag" not in str(info.value)


MALFORMED = [
    ("NO_EQUALS_SIGN", False),
    ("1BAD=s3cretvalue", False),
    ("BAD-NAME=s3cretvalue", False),
    ('ENCODER_PRIVATE_KEY="unterminated', True),
    ("ENCODER_PRIVATE_KEY='unterminated", True),
    ('ENCODER_PRIVATE_KEY="a" trailing', True),
    ('ENCODER_PRIVATE_KEY="a"trailing', True),  # right after the quote: no space between
    ('ENCODER_PRIVATE_KEY="ends in an escape\\', True),  # a backslash last: no IndexError
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


@pytest.mark.parametrize(("line", "kind"), [
    ('KEY="open', "double"), ("KEY='open", "single"), ('KEY="open\\', "double"),
    ('KEY="open\\"', "double"),  # an escaped quote closes nothing
])
def test_an_unterminated_quote_is_named_by_its_kind(line: str, kind: str) -> None:
    with pytest.raises(ConfigurationError, match=f"KEY: unterminated {kind} quote"):
        parse_dotenv(line)


def test_backslashes_are_read_as_nodes_dotenv_reads_them() -> None:
    r"""Only \n and \r, only in double quotes, left to right; a backslash before the quote
    keeps it from closing the value; every other backslash stays (session 39: \t, \\ and
    \" were escapes here, not in the encoder's dotenv)."""
    text = "\n".join([
        r'A="t\tr\rb\\q\qz"',
        r"B='t\t\n'",
        r'C="a\\nb"',
        r'D="say \"hi\" # kept"  # a comment',
        r"E='it\'s'",
        r'F="\n\r"',
    ])
    assert parse_dotenv(text) == {
        "A": "t\\tr\rb\\\\q\\qz", "B": "t\\t\\n", "C": "a\\\nb",
        "D": 'say \\"hi\\" # kept', "E": "it\\'s", "F": "\n\r",
    }


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


def test_a_byte_order_mark_at_the_start_is_dropped(tmp_path: Path) -> None:
    """Windows editors start a UTF-8 file with a byte-order mark; it was read as part of the
    first name, refused as "not a valid variable name" on a line that looks right (operator
    review). Anywhere else it is still no part of a valid name."""
    path = tmp_path / ".env"
    path.write_bytes(b"\xef\xbb\xbfGATEWAY_MONITOR_ENABLED=true\nDATABASE_NAME=x\n")
    assert read_dotenv(path) == {"GATEWAY_MONITOR_ENABLED": "true", "DATABASE_NAME": "x"}
    path.write_bytes(b"GATEWAY_MONITOR_ENABLED=true\n\xef\xbb\xbfDATABASE_NAME=x\n")
    with pytest.raises(ConfigurationError) as info:
        read_dotenv(path)
    assert info.value.variable == f"{path}:2"


SETTINGS_NAMES = ("GATEWAY_MONITOR_ENABLED", "ENCODER_DID", "ENCODER_PRIVATE_KEY", "MONGODB_URI",
                  "DATABASE_NAME", "VERIFIER_CHAIN")


@pytest.mark.parametrize(("name", "meant"), [
    ("GATEWAY_MONITR_ENABLED", "GATEWAY_MONITOR_ENABLED"),
    ("ENCODER_DIDD", "ENCODER_DID"),
    ("ENCODER_PRIVATE_KY", "ENCODER_PRIVATE_KEY"),
    ("MONGODB_URL", "MONGODB_URI"),
    ("DATABASE_NAMES", "DATABASE_NAME"),
])
def test_a_misspelt_setting_is_named_by_line_with_the_name_meant(
    name: str, meant: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Names of the settings' families (first word GATEWAY_, ENCODER_, MONGODB_, DATABASE_)
    that are no setting were silently ignored (operator review): the monitor of
    GATEWAY_MONITR_ENABLED stayed off. A warning names the line and the setting meant, never
    the value (it may be the key); not refused, as the 3Speak encoder's own .env has names of
    its own (ENCODER_PUBLIC_KEY...)."""
    text = f"GATEWAY_MONITOR_ENABLED=true\n{name}=s3cretvalue\n"
    parsed = parse_dotenv(text, source="settings.env", known=SETTINGS_NAMES)
    assert parsed[name] == "s3cretvalue"  # read, and no setting: nothing uses it
    assert f"settings.env:2: {name} is not a setting" in caplog.text
    assert f"did you mean {meant}?" in caplog.text and "DOTENV_UNKNOWN_NAME" in caplog.text
    assert "s3cretvalue" not in caplog.text


def test_a_misspelt_verifier_setting_is_refused_by_line() -> None:
    """VERIFIER_* names are this program's alone: refused, as in the environment."""
    text = "VERIFIER_CHIAN=" + "s3cret" + "value\n"
    with pytest.raises(ConfigurationError) as info:
        parse_dotenv(text, source="settings.env", known=SETTINGS_NAMES)
    assert info.value.variable == "settings.env:1"
    assert "did you mean VERIFIER_CHAIN?" in info.value.problem
    assert_error_clean(info.value, "s3cretvalue")


def test_names_of_other_families_and_unchecked_parses_pass_silently(
    caplog: pytest.LogCaptureFixture
) -> None:
    text = "HIVE_USERNAME=me\nIPFS_API_ADDR=/ip4/127.0.0.1/tcp/5001\nGATEWAY=x\nENCODER_DID=d\n"
    assert parse_dotenv(text, known=SETTINGS_NAMES) == {
        "HIVE_USERNAME": "me", "IPFS_API_ADDR": "/ip4/127.0.0.1/tcp/5001", "GATEWAY": "x",
        "ENCODER_DID": "d"}
    # Without the settings' names the parser checks the format only.
    assert parse_dotenv("GATEWAY_MONITR_ENABLED=true\n") == {"GATEWAY_MONITR_ENABLED": "true"}
    assert caplog.text == ""


def test_another_programs_name_gets_no_misleading_guess(caplog: pytest.LogCaptureFixture) -> None:
    """Review (session 16): at difflib's default cutoff the 3Speak encoder's own
    ENCODER_PUBLIC_KEY was told it meant ENCODER_PRIVATE_KEY."""
    parse_dotenv("ENCODER_PUBLIC_KEY=x\nGATEWAY_AID_PRIMARY=y\n",
                 known=(*SETTINGS_NAMES, "GATEWAY_AID_BASE_URL"))
    assert caplog.text.count("is not a setting") == 2 and "did you mean" not in caplog.text


def test_a_name_unlike_any_setting_is_warned_about_without_a_guess(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / ".env"
    path.write_text("ENCODER_XYZZY_QUUX=1\n", encoding="utf-8")
    assert read_dotenv(path, known=SETTINGS_NAMES) == {"ENCODER_XYZZY_QUUX": "1"}
    assert f"{path}:1: ENCODER_XYZZY_QUUX is not a setting of this verifier (ignored)" \
        in caplog.text


@pytest.mark.parametrize("separator", ["\x85", "\u2028", "\u2029", "\x0b", "\x0c", "\x1c",
                                       "\x1d", "\x1e"])
def test_a_setting_cannot_hide_in_a_comment_behind_a_unicode_line_break(separator: str) -> None:
    """str.splitlines() broke lines at these too, so ``# comment<U+0085>VERIFIER_CHAIN=...``,
    one comment line to an editor and to the encoder's dotenv, set the chain here
    (adversarial review). Lines end at \\n, \\r\\n or \\r only; any other control character
    is refused by line number, never shown with the line."""
    text = f"GATEWAY_MONITOR_ENABLED=true\n# a comment{separator}VERIFIER_CHAIN=s3cretvalue\n"
    with pytest.raises(ConfigurationError) as info:
        parse_dotenv(text, source="settings.env")
    assert info.value.variable == "settings.env:2"
    assert f"U+{ord(separator):04X}" in info.value.problem
    assert_error_clean(info.value, "s3cretvalue")


@pytest.mark.parametrize("line", ["ENCODER_PRIVATE_KEY=s3cret\x00value",
                                  "ENCODER_PRIVATE_KEY='s3cret\x1bvalue'",
                                  "ENCODER_PRIVATE_KEY=s3cret\x7fvalue"])
def test_control_characters_in_a_line_are_refused_by_number(line: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_dotenv(f"A=1\r\nB=2\r{line}\n")
    assert info.value.variable == ".env:3"
    assert_error_clean(info.value, "s3cret")


def test_only_crlf_cr_and_lf_end_lines_and_tabs_stay_allowed() -> None:
    assert parse_dotenv("A=1\r\nB=2\rC=3\n\tD =\t'x\ty'\t# tabbed\n") == {
        "A": "1", "B": "2", "C": "3", "D": "x\ty"}


def test_a_backtick_quoted_value_is_refused_naming_the_line() -> None:
    """Node's dotenv (the encoder's) strips backticks: ``DATABASE_NAME=`jobs``` is ``jobs``
    to the encoder; keeping the backticks silently would read another database name."""
    with pytest.raises(ConfigurationError) as info:
        parse_dotenv("GATEWAY_MONITOR_ENABLED=true\nENCODER_PRIVATE_KEY=`s3cret" + "value`\n",
                     source="settings.env")
    assert info.value.variable == "settings.env:2"
    assert "backtick" in info.value.problem and "ENCODER_PRIVATE_KEY" in info.value.problem
    assert_error_clean(info.value, "s3cretvalue")
    assert parse_dotenv("A='`x`'\nB=a`b\n") == {"A": "`x`", "B": "a`b"}  # inside: kept


@pytest.mark.parametrize(("name", "meant"), [
    ("VERIFER_CHAIN", "VERIFIER_CHAIN"), ("verifier_chain", "VERIFIER_CHAIN"),
    ("Encoder_Did", "ENCODER_DID"), ("verifier_anything", None),
])
def test_a_near_miss_meant_for_this_program_is_refused_whatever_its_first_word(
    name: str, meant: str | None
) -> None:
    """Only names sharing a setting's first word (case included) were checked: VERIFER_CHAIN
    and verifier_chain were ignored without a word (adversarial review)."""
    with pytest.raises(ConfigurationError) as info:
        parse_dotenv(f"{name}=s3cret" + "value\n", source="settings.env", known=SETTINGS_NAMES)
    assert info.value.variable == "settings.env:1"
    assert (f"did you mean {meant}?" in info.value.problem) if meant else \
        "misspelt?" in info.value.problem
    assert_error_clean(info.value, "s3cretvalue")


def test_a_near_miss_of_another_family_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    parsed = parse_dotenv("GATWAY_MONITOR_ENABLED=true\nHIVE_USERNAME=me\nPATH=/bin\n",
                          source="settings.env", known=SETTINGS_NAMES)
    assert parsed["GATWAY_MONITOR_ENABLED"] == "true"
    assert caplog.messages == ["DOTENV_UNKNOWN_NAME: settings.env:1: GATWAY_MONITOR_ENABLED is "
                               "not a setting of this verifier: did you mean "
                               "GATEWAY_MONITOR_ENABLED? (ignored)"]


#: A private key (base64, 44 characters with its '=') glued to its name: ``=`` forgotten.
_GLUED_KEY = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA"


@pytest.mark.parametrize(("line", "secret"), [
    (f"ENCODER_PRIVATE_KEY{_GLUED_KEY}=", _GLUED_KEY),
    ("MONGODB_URIhunter2Pw=x", "hunter2Pw"),
    ("VERIFIER_CHAINhunter2Pw=x", "hunter2Pw"),
])
def test_a_secret_glued_to_a_name_is_not_repeated_as_the_name(
    line: str, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A key pasted after its name with the ``=`` forgotten (base64 ends in ``=``) made a
    valid name of name and key, which the unknown-name warning repeated whole into the log.
    A name that does not look like one (a long run of letters and digits, or mixed case
    within a word) is shown by its length."""
    try:
        parse_dotenv(line + "\n", source="settings.env", known=SETTINGS_NAMES)
    except ConfigurationError as exc:
        assert exc.variable == "settings.env:1"
        assert_error_clean(exc, secret)
        assert "name of" in exc.problem
    else:
        assert "settings.env:1" in caplog.text and "name of" in caplog.text
    assert secret not in caplog.text


@pytest.mark.parametrize(("name", "shown"), [
    ("A" * 16 + ("_" + "B" * 15) * 3, "A" * 16 + ("_" + "B" * 15) * 3),  # 64: a name
    ("A" * 16 + ("_" + "B" * 15) * 3 + "C", "a name of 65 characters (the rest"),
    ("ENCODER_PRIVATE_KEYz6MkhaXgBZDvotDk", "a name of 35 characters starting ENCODER_ (the"),
    ("OTHER_PRIVATE_KEYz6MkhaXgBZDvotDkxy", "a name of 35 characters (the rest"),  # no family
    ("ENCODERz6MkhaXgBZDvotDkL5257faiztiG", "a name of 35 characters (the rest"),  # one word
    ("Verifier_Chain", "Verifier_Chain"), ("verifier_chain", "verifier_chain"),
    ("VERIFIER__CHAIN_", "VERIFIER__CHAIN_"),  # empty words are no secret
])
def test_a_name_is_shown_whole_only_when_it_looks_like_one(name: str, shown: str) -> None:
    """Words of one case (or capitalised) of at most 16 characters, 64 in all; otherwise its
    length, and its first word when that is a family's (session 39: both edges, and the
    family, were untested)."""
    assert shown_name(name, ("ENCODER_", "VERIFIER_")).startswith(shown)


# --------------------------------------------------------------------------- file mode

posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def _is_token(name: str, value: str) -> bool:
    return name == "API_TOKEN" and bool(value)


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_file_others_may_read_that_holds_a_credential_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int
) -> None:
    """As ssh and libpq do for their keys and passwords, but a warning, never a refusal:
    in containers the file's mode is often the image's, and the node must still start."""
    path = tmp_path / ".env"
    path.write_text("API_TOKEN=s3cretvalue\nOTHER=1\n", encoding="utf-8")
    path.chmod(mode)
    assert read_dotenv(path, sensitive=_is_token) == {"API_TOKEN": "s3cretvalue", "OTHER": "1"}
    assert "DOTENV_READABLE" in caplog.text
    assert str(path) in caplog.text and f"mode {mode:04o}" in caplog.text
    assert "API_TOKEN" in caplog.text and "chmod 600" in caplog.text
    assert "s3cretvalue" not in caplog.text
    assert [r.levelname for r in caplog.records] == ["WARNING"]


@posix_only
@pytest.mark.parametrize(("mode", "text"), [
    (0o600, "API_TOKEN=s3cretvalue\n"),  # the owner's alone
    (0o400, "API_TOKEN=s3cretvalue\n"),
    (0o644, "OTHER=1\nAPI_TOKEN=\n"),  # nothing secret in it
])
def test_a_private_file_or_one_without_credentials_is_not_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: int, text: str
) -> None:
    path = tmp_path / ".env"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    read_dotenv(path, sensitive=_is_token)
    read_dotenv(path)  # no predicate: nothing is known to be secret
    assert "DOTENV_READABLE" not in caplog.text
