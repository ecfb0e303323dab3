"""The start-up checks of a command: ELF files built here field by field, and #! lines.

``_check_elf`` refuses a program this machine cannot start (built for another machine, or
needing a loader that is missing), since such a command passed start-up and then failed every
job it claimed (session 36). Its tests patched a copy of ``/bin/true``: one class (64-bit), one
byte order (the host's), one machine. Mutation testing (session 40) found the 32-bit and
big-endian readings, the machines a host also runs, the size of the header and the bound of
what is read all untested. The files here are headers and program headers only: the check
reads them and never runs them.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from verifier import CommandWork, ConfigurationError

C = 1.0
_PT_INTERP = 3
_HOST = struct.unpack_from("<H", Path("/proc/self/exe").read_bytes()[:64], 18)[0]
#: A machine this host also runs (its 32-bit personality), where the tests know one.
_ALSO = {62: 3, 183: 40}.get(_HOST)
_FOREIGN = 183 if _HOST != 183 else 62


def _elf(machine: int, *, wide: bool = True, order: str = "<", loader: bytes | None = None,
         loader_at: int | None = None) -> bytes:
    """An ELF file: the header, one program header (PT_INTERP naming ``loader``, placed at
    ``loader_at``), and the loader's name; fields as the ELF specification lays them out."""
    ident = b"\x7fELF" + bytes([2 if wide else 1, 1 if order == "<" else 2, 1]) + bytes(9)
    header_size, entry_size = (64, 56) if wide else (52, 32)
    name = (loader or b"") + b"\0"
    at = loader_at if loader_at is not None else header_size + entry_size
    if wide:
        header = ident + struct.pack(order + "HHIQQQIHHHHHH", 2, machine, 1, 0, header_size, 0,
                                     0, header_size, entry_size, 1, 0, 0, 0)
        program = struct.pack(order + "IIQQQQQQ", _PT_INTERP if loader else 1, 4, at, 0, 0,
                              len(name), len(name), 1)
    else:
        header = ident + struct.pack(order + "HHIIIIIHHHHHH", 2, machine, 1, 0, header_size, 0,
                                     0, header_size, entry_size, 1, 0, 0, 0)
        program = struct.pack(order + "IIIIIIII", _PT_INTERP if loader else 1, at, 0, 0,
                              len(name), len(name), 4, 1)
    body = header + program
    return body + bytes(at - len(body)) + name


def _command(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "encode"
    path.write_bytes(data)
    path.chmod(0o755)
    return path


def _refusal(tmp_path: Path, data: bytes) -> str | None:
    """The start-up check's message for a command made of ``data``, or None if it passes."""
    try:
        CommandWork([str(_command(tmp_path, data))], cancel_latency=C)
    except ConfigurationError as refused:
        return str(refused)
    return None


_LAYOUTS = [(True, "<"), (False, "<"), (True, ">"), (False, ">")]
_IDS = ["64-bit", "32-bit", "64-bit-big-endian", "32-bit-big-endian"]


@pytest.mark.parametrize(("wide", "order"), _LAYOUTS, ids=_IDS)
def test_a_missing_loader_is_found_in_every_class_and_byte_order(tmp_path: Path, wide: bool,
                                                                 order: str) -> None:
    missing = _elf(_HOST, wide=wide, order=order, loader=b"/nonexistent/ld-test.so.1")
    assert "needs the loader '/nonexistent/ld-test.so.1'" in (_refusal(tmp_path, missing) or "")
    present = _elf(_HOST, wide=wide, order=order, loader=Path("/bin/sh").resolve().as_posix()
                   .encode())
    assert _refusal(tmp_path, present) is None


@pytest.mark.parametrize(("wide", "order"), _LAYOUTS, ids=_IDS)
def test_a_program_for_another_machine_is_named_with_both_machines(tmp_path: Path, wide: bool,
                                                                   order: str) -> None:
    names = {62: "x86-64", 183: "aarch64"}
    said = _refusal(tmp_path, _elf(_FOREIGN, wide=wide, order=order))
    assert said is not None and "is a program for another machine" in said
    if _HOST in names:
        assert f"({names[_FOREIGN]}; this host runs {names[_HOST]})" in said


def test_a_32_bit_build_of_the_host_s_family_is_not_refused(tmp_path: Path) -> None:
    """x86-64 runs i386 programs, aarch64 32-bit ARM ones (the kernel's 32-bit personality):
    such a command works where its loader is installed, and must not be refused as foreign;
    its loader is then what decides."""
    if _ALSO is None:
        pytest.skip("no 32-bit machine known for this host")
    assert _refusal(tmp_path, _elf(_ALSO, wide=False)) is None
    said = _refusal(tmp_path, _elf(_ALSO, wide=False, loader=b"/nonexistent/ld-linux.so.2"))
    assert said is not None and "needs the loader" in said


@pytest.mark.parametrize("data", [
    b"\x7fELF" + bytes(14),                       # too short to name a machine
    b"\x7fELF\x02\x01\x01" + bytes(11),           # ... with a class and a byte order
    b"\x7fELF\x03\x01\x01" + bytes(13),           # no such class
    b"\x7fELF\x02\x03\x01" + bytes(13),           # no such byte order (its version 1)
], ids=["short", "short-but-valid-start", "class-3", "order-3"])
def test_a_header_the_check_cannot_read_is_left_to_the_kernel(tmp_path: Path,
                                                              data: bytes) -> None:
    """Refusing a command that works would be worse than the failed jobs: what the check does
    not understand, it does not judge."""
    assert _refusal(tmp_path, data) is None


def test_twenty_bytes_are_enough_to_name_the_machine(tmp_path: Path) -> None:
    data = _elf(_FOREIGN)[:20]
    assert "for another machine" in (_refusal(tmp_path, data) or "")


def test_a_loader_name_past_what_is_read_is_not_judged(tmp_path: Path) -> None:
    """The check reads the first 64 KiB. A name that starts inside them and ends past them is
    not read half (a half name is a missing loader); one that ends inside them is judged."""
    loader = b"/nonexistent/ld-far.so.1"
    across = _elf(_HOST, loader=loader, loader_at=65536 - 8) + bytes(65536)
    assert _refusal(tmp_path, across) is None
    inside = _elf(_HOST, loader=loader, loader_at=65536 - len(loader) - 1)
    assert "needs the loader" in (_refusal(tmp_path, inside) or "")


@pytest.mark.parametrize("line", ["#!/usr/bin/env -S -i nosuchinterp",
                                  "#!/usr/bin/env -S PATH=/opt/encoder/bin nosuchinterp"])
def test_an_env_line_with_an_option_or_a_path_of_its_own_is_not_judged(tmp_path: Path,
                                                                        line: str) -> None:
    """After ``env -S``, an option or a ``PATH=`` of its own makes what env will run unknown
    here: not judged (refusing a command that works would be worse than failed jobs)."""
    assert _refusal(tmp_path, f"{line}\necho hello\n".encode()) is None


@pytest.mark.parametrize(("line", "hinted"), [
    ("#!/usr/bin/env nosuchinterp", False),
    ("#!/usr/bin/env nosuch interp", True),
    ("#!/usr/bin/env nosuch\tinterp", True),
])
def test_the_split_string_hint_is_given_only_for_a_name_with_a_blank(tmp_path: Path, line: str,
                                                                     hinted: bool) -> None:
    """Linux passes the rest of a #! line to env as one word: a name with a space or a tab in
    it is a missing ``-S``, which the message then says; a plain missing name is just missing,
    and the hint would send the operator the wrong way."""
    said = _refusal(tmp_path, f"{line}\necho hello\n".encode())
    assert said is not None and "is not on the command's PATH" in said
    assert ("env -S" in said) is hinted

