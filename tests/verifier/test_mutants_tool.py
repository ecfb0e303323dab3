"""The mutation operators of ``benchmarks/mutants.py``, on tiny sources (pure: no test runs)."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "mutants.py"
_SPEC = importlib.util.spec_from_file_location("spk_mutants_tool", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
mutants = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = mutants  # dataclasses resolve their module through sys.modules
_SPEC.loader.exec_module(mutants)


def _mutants(source: str) -> list:
    return mutants.enumerate_mutants(source, "m.py")


def _changes(source: str) -> dict[str, str]:
    """``operator:change`` → the mutated source, for every mutant of ``source``."""
    found = {}
    for m in _mutants(source):
        key = f"{m.operator}:{m.description.split('@')[0]}"
        assert key not in found, key
        found[key] = m.apply(source.encode()).decode()
    return found


def _mutants_texts(source: str) -> list[tuple[str, str]]:
    return [(m.operator, m.apply(source.encode()).decode()) for m in _mutants(source)]


def test_a_sum_of_three_terms_loses_each_term_once():
    texts = _mutants_texts("x = a + b + c\n")
    assert sorted(t for op, t in texts if op == "drop-term") == [
        "x = a + b\n", "x = a + c\n", "x = b + c\n"]
    assert sorted(t for op, t in texts if op == "arith") == ["x = a + b - c\n", "x = a - b + c\n"]


def test_dropping_the_first_term_of_a_difference_keeps_the_sign():
    texts = {t for op, t in _mutants_texts("y = a - b\n") if op == "drop-term"}
    assert texts == {"y = a\n", "y = -b\n"}


def test_strings_and_lists_are_not_arithmetic():
    assert _mutants('s = "a" + name\n') == []
    assert {m.operator for m in _mutants("xs = [1] + ys\n")} == {"const"}


def test_an_if_comparison_gets_its_boundary_and_a_negation():
    source = "if t < d:\n    go()\n"
    changes = _changes(source)
    assert changes["cmp:Lt->LtE"] == "if t <= d:\n    go()\n"
    assert changes["negate:not-if"] == "if not (t < d):\n    go()\n"
    assert changes["delete-call:delete-call"] == "if t < d:\n    pass\n"


@pytest.mark.parametrize(("source", "mutated"), [
    ("ok = a >= b\n", "ok = a > b\n"),
    ("ok = a == b\n", "ok = a != b\n"),
    ("ok = a in b\n", "ok = a not in b\n"),
    ("ok = a not in b\n", "ok = a in b\n"),
    ("ok = a is not None\n", "ok = a is None\n"),
    ("ok = a and b or c\n", "ok = a or b or c\n"),
    ("ok = a and b or c\n", "ok = a and b and c\n"),
])
def test_comparison_and_boolean_swaps(source, mutated):
    assert mutated in [t for _, t in _mutants_texts(source)]


def test_constants_booleans_and_clamps():
    changes = _changes("n = 3\nflag = True\nw = max(a, b + 1)\n")
    assert changes["const:3->0"].startswith("n = 0\n")
    assert changes["const:3->4"].startswith("n = 4\n")
    assert changes["const:3->2"].startswith("n = 2\n")
    assert "flag = False\n" in changes["bool:True->False"]
    assert changes["minmax:max->arg0"].endswith("w = a\n")
    assert changes["minmax:max->arg1"].endswith("w = (b + 1)\n")


def test_return_none_only_where_the_annotation_admits_it():
    source = (
        "def f() -> int | None:\n    return g()\n"
        "def h() -> int:\n    return g()\n"
        "def k() -> Generator[A, B, C | None]:\n    yield x\n    return c\n"
    )
    returns = [m for m in _mutants(source) if m.operator == "return-none"]
    assert [m.description for m in returns] == ["return->None@f", "return->None@k"]


def test_effect_statements_are_deleted():
    source = ("async def f():\n    await x()\n"
              "def g():\n    yield from self._release(r)\n    yield Sleep(t)\n")
    deleted = {m.description for m in _mutants(source) if m.operator == "delete-call"}
    assert deleted == {"delete-await@f", "delete-yieldfrom@g", "delete-yield@g"}


def test_docstrings_logs_annotations_asserts_and_all_are_skipped():
    source = '''"""Doc 1 < 2."""
__all__ = ["a" + "b"]
_LOG.warning("x %d", 1 + 2)


def f(a: Annotated[int, 3] = 4) -> Literal[5]:
    """Doc."""
    self._log("CODE", "info", f"{n + 1}")
    assert a < 6
    if a:
        self._log("ONLY", "info", "logging")
    return a
'''
    found = _mutants(source)
    assert sorted(m.id for m in found) == [
        "m.py:6:30:const:4->0@f", "m.py:6:30:const:4->3@f", "m.py:6:30:const:4->5@f"]


def test_ids_are_stable_and_name_the_place():
    source = "def settle(g, e):\n    return 3 * g + e\n"
    first = [m.id for m in mutants.enumerate_mutants(source, "verifier/_x.py")]
    again = [m.id for m in mutants.enumerate_mutants(source.encode(), "verifier/_x.py")]
    assert first == again
    assert len(set(first)) == len(first)
    assert "verifier/_x.py:2:12:const:3->2@settle" in first
    assert "verifier/_x.py:2:18:drop-term:drop-right@settle" in first


def test_a_mutant_changes_exactly_its_span_and_stays_byte_identical_elsewhere():
    source = "# é comment\ndef f(t, d):  # Δ\n    if t < d:  # keep\n        return 1\n"
    data = source.encode()
    (mutant,) = [m for m in _mutants(source) if m.operator == "cmp"]
    assert (mutant.line, mutant.col) == (3, 10)
    ((start, end, text),) = mutant.edits
    assert data[start:end] == b"<" and text == b"<="
    mutated = mutant.apply(data)
    assert mutated == data[:start] + b"<=" + data[end:]
    assert mutant.old == "if t < d: # keep" and mutant.new == "if t <= d: # keep"
    for m in _mutants(source):  # every mutant compiles and differs from the original
        ast.parse(m.apply(data))
        assert m.apply(data) != data


def test_pragma_no_mutate_freezes_a_line():
    assert _mutants("x = a + 1  # pragma: no mutate\n") == []


def test_apply_edits_refuses_overlaps():
    assert mutants.apply_edits(b"abcdef", [(4, 5, b"E"), (0, 1, b"A")]) == b"AbcdEf"
    with pytest.raises(ValueError):
        mutants.apply_edits(b"abcdef", [(0, 3, b""), (2, 4, b"")])


def _git(repo: Path, *args: str) -> None:
    git = shutil.which("git")
    assert git is not None, "git is needed (mutants.py --since runs it)"
    subprocess.run([git, "-C", str(repo), *args], check=True,  # noqa: S603 (fixed arguments)
                   capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
                        "HOME": str(repo), "PATH": "/usr/bin:/bin"})


def test_since_keeps_only_the_mutants_of_changed_lines(tmp_path: Path):
    """``--since REV``: a change's own mutants, those whose edits touch a line the working tree
    added or changed since REV (a multi-line expression counts on any of its lines); a hunk
    that only deletes marks the lines beside the cut."""
    _git(tmp_path, "init", "-q")
    (tmp_path / "m.py").write_text(
        "a = x + 1\nb = y < 2\nc = (z\n     + 3)\nd = w - 4\ne = v * 5\nf = u / 6\n")
    _git(tmp_path, "add", "m.py")
    _git(tmp_path, "commit", "-q", "-m", "base")
    # b's line changed, the first line of c's sum changed, e's line deleted.
    (tmp_path / "m.py").write_text(
        "a = x + 1\nb = y <= 2\nc = (q\n     + 3)\nd = w - 4\nf = u / 6\n")
    assert mutants.changed_lines(tmp_path, "HEAD", "m.py") == {2, 3, 5, 6}
    kept = mutants.collect(tmp_path, ["m.py"], [], "HEAD", repo=tmp_path)
    every = mutants.collect(tmp_path, ["m.py"], [])
    assert {m.line for m in every} == {1, 2, 4, 5, 6}
    # d and f stand beside the cut; of c's sum (anchored on its operator's line 4), only the
    # mutants whose edits reach back to line 3 (a term dropped) are the change's.
    assert {m.line for m in kept} == {2, 4, 5, 6}
    assert {m.operator for m in kept if m.line == 4} == {"drop-term"}
    assert {m.operator for m in every if m.line == 4} == {"drop-term", "arith", "const"}
    with pytest.raises(mutants.ToolError, match="git diff nosuchrev"):
        mutants.collect(tmp_path, ["m.py"], [], "nosuchrev", repo=tmp_path)


def test_a_test_run_cannot_see_or_signal_processes_outside_it(tmp_path: Path):
    """A mutant of the keeper turned ``os.killpg(0, SIGKILL)`` into ``os.killpg(1, SIGKILL)``,
    which is ``kill(-1)``: run as root it ended every process of the machine (session 40).
    Each test run now gets a PID namespace of its own where one can be made; checked here with
    signal 0, which only asks whether a process can be signalled, so nothing is at risk even
    if the confinement were gone."""
    if not mutants.isolation():
        pytest.skip("no PID namespace can be made here (unshare): runs are not confined")
    outside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        probe = (f"import os\ntry:\n    os.kill({outside.pid}, 0)\nexcept ProcessLookupError:\n"
                 "    print('unseen', os.getpid())\nelse:\n    print('seen')\n")
        code, out, _ = mutants.run([sys.executable, "-c", probe], tmp_path, 60)
    finally:
        outside.kill()
        outside.wait()
    assert code == 0, out
    words = out.split()
    assert words[0] == "unseen", out
    assert int(words[1]) < 10, out  # one of the first processes of its own namespace
