"""Mutation testing of the safety-critical modules, with the standard library only.

Usage::

    python benchmarks/mutants.py [--files F [F ...]] [--tests "CMD"] [--jobs N] [--timeout S]
                                 [--only PATTERN] [--since REV] [--list] [--json PATH]
                                 [--min-score X]

A *mutant* is one small, deliberate bug: ``<`` where the code says ``<=``, a timing bound left
out of a sum, a ``yield Sleep(...)`` deleted. The test command *kills* a mutant when it fails on
it; a mutant that *survives* is a behaviour of the shipped code that no test pins down. The
figure this prints is ``score = killed / (killed + survived)``; the list that matters is the
survivors.

Method
------
* **Operators.** The modules under test decide ownership from timing bounds, so the operators
  are the bugs such code really has. Comparison boundaries (``<``/``<=``, ``>``/``>=``,
  ``==``/``!=``, ``in``/``not in``, ``is``/``is not``: "at the deadline" is where races live);
  arithmetic (``+``/``-``, ``*``/``/``) and **one term dropped from a sum** (the settle delay
  is ``3G + ε + lag``: forgetting ``ε`` is the classic bug); numeric constants (``n → 0``,
  ``n → n+1``, ``n → n-1`` for small ints: three write delays, not two); conditions (an
  ``if``/``while``/conditional-expression/comprehension test negated, ``and`` ↔ ``or``,
  ``True`` ↔ ``False``); clamps (``max(a, b)`` → ``a`` or ``b``, ``min`` alike); ``return X``
  → ``return None`` only where the annotation admits ``None`` (in ``_verify`` that means
  "confirmed"); and a statement that is a call, ``await``, ``yield`` or ``yield from`` deleted
  (a release, a cancel, the settle ``Sleep``).
* **Not mutated** (noise, not information): docstrings, logging calls (``self._log(...)``,
  ``_LOG.*``, ``*logger*``), assignments to a logger, the bodies of logging helpers named
  ``_log``, ``if`` statements whose only effect is logging, ``__all__``, type annotations,
  ``assert`` statements, decorators (``@dataclass(frozen=True)``), f-strings (messages),
  ``if TYPE_CHECKING:`` blocks, and any line carrying ``# pragma: no mutate``.
* **Text splices.** A mutant is a list of byte-precise edits of the source at the AST's
  positions: the rest of the file is byte-identical (comments and formatting included), so a
  survivor's diff is one line. Every mutant is compiled before it is run; one that does not
  compile, or repeats the source of an earlier one, is dropped.
* **Ids.** ``file:line:col:operator:change@scope`` (1-based line and column, ``scope`` the
  enclosing ``Class.function``), e.g.
  ``verifier/_policy.py:109:16:const:3->2@TimingModel.settle_delay``. Ids are deterministic:
  ``--only`` selects by substring (``--only settle_delay``, or a whole id to rerun one).
* **A change's own mutants.** ``--since REV`` keeps the mutants whose edits touch a line
  added or changed since the git revision ``REV`` (``git diff -U0 REV``, the working tree
  against it): the code a session changed is mutated without re-running what an earlier run
  already read, and ``--only`` narrows further.
* **Why a copy.** The working tree is shared (others edit it, and the editable install points
  at it): mutating it in place would race with them and could leave a bug behind after a
  crash. The files ``git ls-files`` lists (tracked and untracked-but-not-ignored, as they are
  in the *working tree*, not HEAD) are snapshotted once into a temporary directory, so every
  mutant runs against the same code; each worker gets its own copy of that snapshot, writes
  one mutated file, runs the tests, and restores the file. Tests run in the copy with
  ``PYTHONPATH`` set to it and ``CI=true`` (the deterministic Hypothesis profile). At start,
  ``import verifier`` is run in every copy and the tool aborts unless it resolves inside it:
  if the tests imported the editable install instead, every mutant would "survive".
  ``PYTHONDONTWRITEBYTECODE=1``: two mutants of one file often have the same size and
  modification second, and a cached ``.pyc`` of the previous one would be imported.
* **Confinement.** Each test run gets a PID namespace of its own (``unshare``, where one can
  be made; else a warning): a mutant of code that signals processes may signal all of them
  (``os.killpg(1, SIGKILL)`` is ``kill(-1)``), and inside the namespace that is only the run's.
* **Baseline.** The test command first runs once unmutated; if it fails, nothing is run (a
  mutant "killed" by a red suite means nothing). A test run longer than the timeout (default
  ``3 × baseline + 5 s``, at least 10 s) counts as killed and is reported separately: a mutant
  that makes the protocol loop forever is caught, only slowly.

Reading survivors
-----------------
Each survivor is either a missing test, or an *equivalent* mutant. For a missing test, write the
test that fails on the mutant (rerun it alone: ``--only ID``). For an equivalent mutant, argue
why no run can tell it apart (for instance ``<`` vs ``<=`` where the two sides can never be
equal, or a ``max`` whose second argument can never be the larger) and write the argument down
next to the code, or mark the line ``# pragma: no mutate``. The score is a figure, not a gate:
the exit status is 0 unless the tool fails (2) or ``--min-score`` is given and not reached (1).
"""

from __future__ import annotations

import argparse
import ast
import bisect
import functools
import json
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT = Path(__file__).resolve().parent.parent

#: The modules whose mistakes cost a double encode.
DEFAULT_FILES = (
    "verifier/protocol.py",
    "verifier/_policy.py",
    "verifier/_guard.py",
    "verifier/_database.py",
)
#: The test command run against every mutant (in the copy; a leading ``python`` is this
#: interpreter). Change it here, or per run with ``--tests``.
DEFAULT_TESTS = (
    'python -m pytest -x -q -p no:cacheprovider -m "not slow" '
    "tests/verifier/test_protocol.py tests/verifier/test_guard.py "
    "tests/verifier/test_database.py conformance/test_quality.py "
    "conformance/test_stateful.py conformance/test_races.py"
)
DEFAULT_JOBS = 2

#: Names that make a call a logging call (any part of its dotted name), and the names of
#: logging helpers whose bodies are not mutated.
LOG_NAMES = frozenset({"_log", "log", "_LOG", "LOG", "logging", "logger", "_logger"})
LOG_HELPERS = frozenset({"_log", "log"})
NO_MUTATE = b"pragma: no mutate"

Edit = tuple[int, int, bytes]  # (start byte, end byte, replacement) in the original source


# --------------------------------------------------------------------------- mutants


@dataclass(frozen=True, slots=True)
class Mutant:
    """One mutation of one file: byte-precise edits of the original source."""

    path: str
    line: int
    col: int
    operator: str
    description: str
    edits: tuple[Edit, ...]
    old: str = ""
    new: str = ""

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}:{self.col}:{self.operator}:{self.description}"

    def apply(self, source: bytes) -> bytes:
        return apply_edits(source, self.edits)


def apply_edits(source: bytes, edits: Sequence[Edit]) -> bytes:
    """``source`` with each ``(start, end, text)`` span replaced; spans must not overlap."""
    out, pos = [], 0
    for start, end, text in sorted(edits):
        if start < pos or end < start:
            raise ValueError(f"overlapping or inverted edit at byte {start}")
        out += [source[pos:start], text]
        pos = end
    out.append(source[pos:])
    return b"".join(out)


_CMP: dict[type[ast.cmpop], tuple[bytes, bytes, str, str]] = {
    # op: (pattern of its token, replacement token, name, name of the replacement)
    ast.Lt: (rb"<(?!=)", b"<=", "Lt", "LtE"),
    ast.LtE: (rb"<=", b"<", "LtE", "Lt"),
    ast.Gt: (rb">(?!=)", b">=", "Gt", "GtE"),
    ast.GtE: (rb">=", b">", "GtE", "Gt"),
    ast.Eq: (rb"==", b"!=", "Eq", "NotEq"),
    ast.NotEq: (rb"!=", b"==", "NotEq", "Eq"),
    ast.In: (rb"\bin\b", b"not in", "In", "NotIn"),
    ast.NotIn: (rb"\bnot\s+in\b", b"in", "NotIn", "In"),
    ast.Is: (rb"\bis\b", b"is not", "Is", "IsNot"),
    ast.IsNot: (rb"\bis\s+not\b", b"is", "IsNot", "Is"),
}
_ARITH: dict[type[ast.operator], tuple[bytes, bytes, str, str]] = {
    ast.Add: (rb"\+", b"-", "Add", "Sub"),
    ast.Sub: (rb"-", b"+", "Sub", "Add"),
    ast.Mult: (rb"\*", b"/", "Mult", "Div"),
    ast.Div: (rb"/", b"*", "Div", "Mult"),
}
_BOOLOP: dict[type[ast.boolop], tuple[bytes, bytes, str, str]] = {
    ast.And: (rb"\band\b", b"or", "And", "Or"),
    ast.Or: (rb"\bor\b", b"and", "Or", "And"),
}
_NON_NUMERIC = (ast.JoinedStr, ast.List, ast.Tuple, ast.ListComp, ast.Dict, ast.Set,
                ast.DictComp, ast.SetComp)
_ATOMIC = (ast.Name, ast.Attribute, ast.Call, ast.Constant, ast.Subscript)


@dataclass(frozen=True, slots=True)
class _Ctx:
    scope: str = ""
    returns_none: bool = False  # may this function's ``return X`` become ``return None``?


def _dotted(expr: ast.expr) -> list[str]:
    if isinstance(expr, ast.Name):
        return [expr.id]
    if isinstance(expr, ast.Attribute):
        return [*_dotted(expr.value), expr.attr]
    if isinstance(expr, ast.Call):
        return _dotted(expr.func)
    return []


def is_log_call(node: ast.AST) -> bool:
    """``self._log(...)``, ``_LOG.warning(...)``, ``self.guard._logger.error(...)``, ..."""
    if not isinstance(node, ast.Call):
        return False
    return any(p in LOG_NAMES or p.lower().endswith("logger") for p in _dotted(node.func))


def _logs_only(stmts: Sequence[ast.stmt]) -> bool:
    return all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and is_log_call(s.value))
               for s in stmts)


def _non_numeric(expr: ast.expr) -> bool:
    if isinstance(expr, ast.BinOp):
        return _non_numeric(expr.left) or _non_numeric(expr.right)
    if isinstance(expr, ast.Constant):
        return isinstance(expr.value, str | bytes)
    return isinstance(expr, _NON_NUMERIC)


def _mentions_none(ann: ast.expr) -> bool:
    if isinstance(ann, ast.Constant):
        return ann.value is None
    if isinstance(ann, ast.BinOp) and isinstance(ann.op, ast.BitOr):
        return _mentions_none(ann.left) or _mentions_none(ann.right)
    if isinstance(ann, ast.Subscript):
        name = _dotted(ann.value)[-1:]
        if name == ["Optional"]:
            return True
        if name == ["Union"]:
            elts = ann.slice.elts if isinstance(ann.slice, ast.Tuple) else [ann.slice]
            return any(_mentions_none(e) for e in elts)
    return False


def _allows_none(returns: ast.expr | None) -> bool:
    """Does a function annotated ``-> returns`` admit ``return None``? (A generator's is its
    third type argument: ``Generator[Action, Answer, Outcome | None]``.)"""
    if returns is None:
        return False
    if isinstance(returns, ast.Constant) and isinstance(returns.value, str):
        try:
            returns = ast.parse(returns.value, mode="eval").body
        except SyntaxError:
            return False
    if isinstance(returns, ast.Subscript):
        name = _dotted(returns.value)[-1:]
        if name == ["Generator"]:
            elts = returns.slice.elts if isinstance(returns.slice, ast.Tuple) else []
            return len(elts) == 3 and _mentions_none(elts[2])
        if name and name[0] in ("AsyncGenerator", "Iterator", "AsyncIterator", "Iterable"):
            return False
    return _mentions_none(returns)


def _is_special_if(node: ast.If) -> bool:
    """``if TYPE_CHECKING:`` and ``if __name__ == "__main__":`` are not behaviour."""
    test = node.test
    if _dotted(test)[-1:] == ["TYPE_CHECKING"]:
        return True
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__")


class _Collector:
    """Walks one module and records every mutant of it (see the module docstring)."""

    def __init__(self, source: bytes, path: str) -> None:
        self.src = source
        self.path = path
        self.tree = ast.parse(source, filename=path)
        lines = source.splitlines(keepends=True)
        self.starts = [0]
        for line in lines:
            self.starts.append(self.starts[-1] + len(line))
        self.frozen_lines = {i + 1 for i, line in enumerate(lines) if NO_MUTATE in line}
        self.found: list[tuple[int, str, str, tuple[Edit, ...]]] = []

    # ---- positions

    def offset(self, line: int, col: int) -> int:
        return self.starts[line - 1] + col

    def span(self, node: ast.AST) -> tuple[int, int]:
        return (self.offset(node.lineno, node.col_offset),  # type: ignore[attr-defined]
                self.offset(node.end_lineno, node.end_col_offset))  # type: ignore[attr-defined]

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset)

    def find(self, start: int, end: int, pattern: bytes) -> tuple[int, int] | None:
        """The first match of an operator token between two operands (outside comments)."""
        gap = self.src[start:end]
        for m in re.finditer(pattern, gap):
            line_start = gap.rfind(b"\n", 0, m.start()) + 1
            if b"#" not in gap[line_start:m.start()]:
                return start + m.start(), start + m.end()
        return None

    def add(self, anchor: int, operator: str, change: str, ctx: _Ctx, *edits: Edit) -> None:
        if not any(self.line_of(e[0]) in self.frozen_lines for e in edits):
            self.found.append((anchor, operator, f"{change}@{ctx.scope or '<module>'}", edits))

    # ---- traversal

    def collect(self) -> list[Mutant]:
        for stmt in self.tree.body:
            self.visit(stmt, _Ctx())
        return self._build()

    def skipped(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Assert | ast.JoinedStr):
            return True
        if isinstance(node, ast.Expr) and (isinstance(node.value, ast.Constant)
                                           or is_log_call(node.value)):
            return True  # docstrings, bare constants, logging statements
        if is_log_call(node):
            return True
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
                return True
            if any(p in LOG_NAMES for t in targets for p in _dotted(t)):
                return True  # ``self._logger = logger or _DEFAULT_LOGGER``
        if isinstance(node, ast.If):
            return _is_special_if(node) or _logs_only(node.body + node.orelse)
        return False

    def visit(self, node: ast.AST, ctx: _Ctx) -> None:
        if self.skipped(node):
            return
        self.mutate(node, ctx)
        for child, child_ctx in self.children(node, ctx):
            self.visit(child, child_ctx)

    def children(self, node: ast.AST, ctx: _Ctx) -> Iterator[tuple[ast.AST, _Ctx]]:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            scope = f"{ctx.scope}.{node.name}" if ctx.scope else node.name
            inner = _Ctx(scope, _allows_none(node.returns))
            # Defaults are behaviour; decorators and annotations are not.
            for default in (*node.args.defaults, *node.args.kw_defaults):
                if default is not None:
                    yield default, inner
            if node.name not in LOG_HELPERS:
                for stmt in node.body:
                    yield stmt, inner
        elif isinstance(node, ast.ClassDef):
            scope = f"{ctx.scope}.{node.name}" if ctx.scope else node.name
            for stmt in node.body:
                yield stmt, _Ctx(scope)
        elif isinstance(node, ast.AnnAssign):
            if node.value is not None:
                yield node.value, ctx
        elif isinstance(node, ast.Lambda):
            yield node.body, _Ctx(ctx.scope)
        else:
            for child in ast.iter_child_nodes(node):
                yield child, ctx

    # ---- operators

    def mutate(self, node: ast.AST, ctx: _Ctx) -> None:
        if isinstance(node, ast.Compare):
            self.compare(node, ctx)
        elif isinstance(node, ast.BinOp):
            self.binop(node, ctx)
        elif isinstance(node, ast.AugAssign):
            self.augassign(node, ctx)
        elif isinstance(node, ast.BoolOp):
            self.boolop(node, ctx)
        elif isinstance(node, ast.Constant):
            self.constant(node, ctx)
        elif isinstance(node, ast.If | ast.While | ast.IfExp):
            self.negate(node.test, type(node).__name__.lower(), ctx)
        elif isinstance(node, ast.comprehension):
            for test in node.ifs:
                self.negate(test, "comp-if", ctx)
        elif isinstance(node, ast.Call):
            self.minmax(node, ctx)
        elif isinstance(node, ast.Return):
            self.return_none(node, ctx)
        elif isinstance(node, ast.Expr):
            self.delete(node, ctx)

    def compare(self, node: ast.Compare, ctx: _Ctx) -> None:
        prev: ast.expr = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            if type(op) in _CMP:
                pattern, token, old, new = _CMP[type(op)]
                found = self.find(self.span(prev)[1], self.span(right)[0], pattern)
                if found:
                    self.add(found[0], "cmp", f"{old}->{new}", ctx, (*found, token))
            prev = right

    def binop(self, node: ast.BinOp, ctx: _Ctx) -> None:
        if type(node.op) not in _ARITH or _non_numeric(node.left) or _non_numeric(node.right):
            return
        pattern, token, old, new = _ARITH[type(node.op)]
        found = self.find(self.span(node.left)[1], self.span(node.right)[0], pattern)
        if not found:
            return
        self.add(found[0], "arith", f"{old}->{new}", ctx, (*found, token))
        if not isinstance(node.op, ast.Add | ast.Sub):
            return
        # Drop one term of a sum. ``a + b + c`` is ``(a + b) + c``: this node drops ``c``
        # (keeping ``a + b``); the innermost node also drops its first term ``a``.
        start, end = self.span(node)
        keep_left = self.src[start:found[0]].rstrip(b" \t\r\n\\")
        self.add(found[0], "drop-term", "drop-right", ctx, (start, end, keep_left))
        left = node.left
        if not (isinstance(left, ast.BinOp) and isinstance(left.op, ast.Add | ast.Sub)
                and self.span(left)[0] == start):
            keep_right = self.src[found[1]:end].lstrip(b" \t\r\n\\")
            if isinstance(node.op, ast.Sub):
                keep_right = b"-" + keep_right
            self.add(found[0], "drop-term", "drop-left", ctx, (start, end, keep_right))

    def augassign(self, node: ast.AugAssign, ctx: _Ctx) -> None:
        if type(node.op) not in _ARITH or _non_numeric(node.value):
            return
        pattern, token, old, new = _ARITH[type(node.op)]
        found = self.find(self.span(node.target)[1], self.span(node.value)[0], pattern + b"=")
        if found:
            self.add(found[0], "arith", f"{old}->{new}", ctx, (found[0], found[0] + 1, token))

    def boolop(self, node: ast.BoolOp, ctx: _Ctx) -> None:
        pattern, token, old, new = _BOOLOP[type(node.op)]
        edits = []
        for left, right in zip(node.values, node.values[1:], strict=False):
            found = self.find(self.span(left)[1], self.span(right)[0], pattern)
            if found is None:
                return
            edits.append((*found, token))
        self.add(edits[0][0], "boolop", f"{old}->{new}", ctx, *edits)

    def constant(self, node: ast.Constant, ctx: _Ctx) -> None:
        start, end = self.span(node)
        value = node.value
        if isinstance(value, bool):
            self.add(start, "bool", f"{value}->{not value}", ctx,
                     (start, end, str(not value).encode()))
            return
        if not isinstance(value, int | float):
            return
        candidates: list[int | float] = []
        if value != 0:
            candidates.append(type(value)(0))
        candidates.append(value + 1)
        if isinstance(value, int) and 2 <= value <= 10:
            candidates.append(value - 1)
        for new in dict.fromkeys(candidates):
            self.add(start, "const", f"{value!r}->{new!r}", ctx, (start, end, repr(new).encode()))

    def negate(self, test: ast.expr, kind: str, ctx: _Ctx) -> None:
        if isinstance(test, ast.Constant):
            return  # ``while True``: the bool operator covers it
        start, end = self.span(test)
        self.add(start, "negate", f"not-{kind}", ctx,
                 (start, end, b"not (" + self.src[start:end] + b")"))

    def minmax(self, node: ast.Call, ctx: _Ctx) -> None:
        if not (isinstance(node.func, ast.Name) and node.func.id in ("max", "min")):
            return
        if node.keywords or len(node.args) < 2 or any(isinstance(a, ast.Starred)
                                                       for a in node.args):
            return
        start, end = self.span(node)
        for i, arg in enumerate(node.args):
            a, b = self.span(arg)
            text = self.src[a:b]
            if not isinstance(arg, _ATOMIC):
                text = b"(" + text + b")"
            self.add(start, "minmax", f"{node.func.id}->arg{i}", ctx, (start, end, text))

    def return_none(self, node: ast.Return, ctx: _Ctx) -> None:
        value = node.value
        if not ctx.returns_none or value is None:
            return
        if isinstance(value, ast.Constant) and value.value is None:
            return
        start, end = self.span(value)
        self.add(self.span(node)[0], "return-none", "return->None", ctx, (start, end, b"None"))

    def delete(self, node: ast.Expr, ctx: _Ctx) -> None:
        if isinstance(node.value, ast.Call | ast.Await | ast.Yield | ast.YieldFrom):
            start, end = self.span(node)
            kind = type(node.value).__name__.lower()
            self.add(start, "delete-call", f"delete-{kind}", ctx, (start, end, b"pass"))

    # ---- results

    def _build(self) -> list[Mutant]:
        seen_ids: set[str] = set()
        seen_sources: set[bytes] = {self.src}
        mutants = []
        for anchor, operator, description, edits in sorted(self.found):
            line = self.line_of(anchor)
            col = len(self.src[self.starts[line - 1]:anchor].decode("utf-8", "replace")) + 1
            mutated = apply_edits(self.src, edits)
            if mutated in seen_sources:
                continue
            try:  # e.g. deleting the ``yield`` of an async generator leaves an invalid one
                compile(mutated, self.path, "exec", dont_inherit=True)
            except (SyntaxError, ValueError):
                continue
            mutant = Mutant(self.path, line, col, operator, description, edits)
            if mutant.id in seen_ids or mutated in seen_sources:
                continue
            seen_ids.add(mutant.id)
            seen_sources.add(mutated)
            old, new = self._diff(edits, mutated)
            mutants.append(Mutant(self.path, line, col, operator, description, edits, old, new))
        return mutants

    def _diff(self, edits: tuple[Edit, ...], mutated: bytes) -> tuple[str, str]:
        """The original lines the edits touch, and the same lines after the mutation."""
        first = min(e[0] for e in edits)
        last = max(e[1] for e in edits)
        lo = self.starts[self.line_of(first) - 1]
        hi = self.starts[self.line_of(max(first, last - 1))]
        delta = sum(len(text) - (end - start) for start, end, text in edits)
        return _one_line(self.src[lo:hi]), _one_line(mutated[lo:hi + delta])


def _one_line(text: bytes, limit: int = 160) -> str:
    flat = " ".join(text.decode("utf-8", "replace").split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


def enumerate_mutants(source: str | bytes, path: str) -> list[Mutant]:
    """Every mutant of one module's source, in source order, with stable ids."""
    data = source.encode("utf-8") if isinstance(source, str) else source
    return _Collector(data, path).collect()


# --------------------------------------------------------------------------- running


@dataclass(frozen=True, slots=True)
class Result:
    mutant: Mutant
    status: str  # "killed" | "timeout" | "survived"
    seconds: float
    detail: str = ""  # the first failing test (or the last output line) when killed


class ToolError(Exception):
    """The tool cannot produce a meaningful figure (exit status 2)."""


_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()
_STOP = threading.Event()  # set on interrupt: start no new test run


def tree_files(root: Path) -> list[str]:
    """The working tree's files as ``git ls-files`` sees them: tracked (as they are now, not as
    in HEAD) and untracked-but-not-ignored; files deleted from the working tree are left out."""
    out = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout.decode()
    names = sorted({n for n in out.split("\0") if n})
    return [n for n in names if (root / n).is_file() or (root / n).is_symlink()]


def snapshot(root: Path, dest: Path) -> int:
    files = tree_files(root)
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target, follow_symlinks=False)
    return len(files)


def command_argv(command: str) -> list[str]:
    argv = shlex.split(command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def command_env(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(copy), CI="true", PYTHONDONTWRITEBYTECODE="1")
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return env


#: Prefixes that run a command in a PID namespace of its own (Linux ``unshare``; the second for
#: a user without root, where user namespaces are allowed), tried in this order.
_ISOLATIONS: Final = (
    ("unshare", "--pid", "--fork", "--mount-proc", "--kill-child"),
    ("unshare", "--user", "--map-root-user", "--pid", "--fork", "--mount-proc", "--kill-child"),
)


@functools.cache
def isolation() -> tuple[str, ...]:
    """The prefix that confines a test run's signals to its own processes, or ``()``.

    A mutant of code that signals processes can signal *every* process: ``os.killpg(0, SIGKILL)``
    mutated to ``os.killpg(1, SIGKILL)`` is ``kill(-1, SIGKILL)``, which as root ends every
    process of the machine but init. Session 40's keeper run did so twice, killing the shell and
    another mutation run beside it. In a PID namespace of its own, ``-1`` means only the test
    run's own processes. Where no namespace can be made, runs go unconfined (a warning says so).
    """
    for prefix in _ISOLATIONS:
        if shutil.which(prefix[0]) is None:
            return ()
        try:
            probe = subprocess.run([*prefix, "true"], stdin=subprocess.DEVNULL,
                                   capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return ()


def run(argv: list[str], cwd: Path, timeout: float | None) -> tuple[int | None, str, float]:
    """Run in its own process group (and PID namespace: :func:`isolation`); returns (exit
    status or None on timeout, output, seconds)."""
    start = time.monotonic()
    if _STOP.is_set():
        raise KeyboardInterrupt
    argv = [*isolation(), *argv]
    proc = subprocess.Popen(argv, cwd=cwd, env=command_env(cwd), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    with _LIVE_LOCK:
        _LIVE.add(proc)
    try:
        try:
            out, _ = proc.communicate(timeout=timeout)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            _kill(proc)
            out, _ = proc.communicate()
            code = None
    finally:
        with _LIVE_LOCK:
            _LIVE.discard(proc)
    return code, out.decode("utf-8", "replace"), time.monotonic() - start


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the test command and anything it started
    except (ProcessLookupError, PermissionError):
        proc.kill()


def check_copy(copy: Path) -> None:
    """Abort unless the code imported in ``copy`` is the copy's (not the editable install)."""
    code, out, _ = run([sys.executable, "-c", "import verifier; print(verifier.__file__)"],
                       copy, 60)
    where = out.strip().splitlines()[-1] if out.strip() else ""
    if code != 0 or not Path(where).resolve().is_relative_to(copy.resolve()):
        raise ToolError(f"in the copy {copy}, `import verifier` gives {where or out!r}: the "
                        "tests would not run the mutated code")


def _detail(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("FAILED ", "ERROR ")):
            return line[:200]
    return lines[-1][:200] if lines else ""


def run_mutant(mutant: Mutant, copies: queue.Queue[Path], originals: dict[str, bytes],
               argv: list[str], timeout: float) -> Result:
    copy = copies.get()
    target = copy / mutant.path
    if not target.resolve().is_relative_to(copy.resolve()):
        copies.put(copy)
        raise ToolError(f"{mutant.path} is not inside the copy")
    try:
        target.write_bytes(mutant.apply(originals[mutant.path]))
        code, out, seconds = run(argv, copy, timeout)
    finally:
        target.write_bytes(originals[mutant.path])
        copies.put(copy)
    if code is None:
        return Result(mutant, "timeout", seconds, f"no result after {timeout:g}s")
    if code == 0:
        return Result(mutant, "survived", seconds)
    return Result(mutant, "killed", seconds, _detail(out))


# --------------------------------------------------------------------------- reporting


def summary(results: Sequence[Result]) -> dict[str, object]:
    timeouts = sum(r.status == "timeout" for r in results)
    killed = sum(r.status == "killed" for r in results) + timeouts
    survived = sum(r.status == "survived" for r in results)
    score = killed / (killed + survived) if killed + survived else None
    return {"total": len(results), "killed": killed, "survived": survived,
            "timeouts": timeouts, "score": score}


def _mutant_json(m: Mutant) -> dict[str, object]:
    return {"id": m.id, "file": m.path, "line": m.line, "col": m.col, "operator": m.operator,
            "description": m.description, "old": m.old, "new": m.new}


def report_text(results: Sequence[Result], meta: dict[str, object]) -> str:
    s = summary(results)
    score = s["score"]
    lines = [
        f"mutation testing of {', '.join(meta['files'])}",  # type: ignore[arg-type]
        f"  test command: {meta['tests']}",
        f"  total {s['total']}   killed {s['killed']}   survived {s['survived']}   "
        f"timeouts {s['timeouts']} (counted as killed)",
        "  score " + (f"{score:.1%}" if isinstance(score, float) else "n/a")
        + " = killed / (killed + survived)",
        f"  elapsed {meta['elapsed_seconds']:.1f}s with {meta['jobs']} jobs "
        f"(baseline run {meta['baseline_seconds']:.1f}s, timeout {meta['timeout']:.0f}s)",
    ]
    survivors = [r for r in results if r.status == "survived"]
    if survivors:
        lines += ["", "survivors (each needs a test that kills it, or an argument that it is "
                      "equivalent):"]
        for r in survivors:
            lines += [f"  {r.mutant.id}", f"      - {r.mutant.old}", f"      + {r.mutant.new}"]
    timeouts = [r for r in results if r.status == "timeout"]
    if timeouts:
        lines += ["", "timeouts (killed, slowly; often an endless loop):"]
        lines += [f"  {r.mutant.id}   {r.mutant.old} → {r.mutant.new}" for r in timeouts]
    return "\n".join(lines)


def report_json(results: Sequence[Result], meta: dict[str, object]) -> dict[str, object]:
    return {
        **meta, **summary(results),
        "survivors": [_mutant_json(r.mutant) for r in results if r.status == "survived"],
        "mutants": [{**_mutant_json(r.mutant), "status": r.status,
                     "seconds": round(r.seconds, 3), "detail": r.detail} for r in results],
    }


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/mutants.py",
        description="Mutation testing of the safety-critical modules (see the module "
                    "docstring for the method and how to read survivors).",
    )
    parser.add_argument("--files", nargs="+", default=list(DEFAULT_FILES), metavar="FILE",
                        help="modules to mutate, relative to the repository root")
    parser.add_argument("--tests", default=DEFAULT_TESTS, metavar="CMD",
                        help="test command run in the copy (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS, metavar="N",
                        help="mutants run in parallel, one copy of the tree each")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="seconds per mutant before it counts as killed by timeout "
                             "(default: 3 x the baseline run + 5)")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="keep mutants whose id contains PATTERN (repeatable: any)")
    parser.add_argument("--since", metavar="REV",
                        help="keep mutants that touch a line changed since the git revision "
                             "REV (the working tree against REV): a change's own mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the report here")
    parser.add_argument("--min-score", type=float, metavar="X",
                        help="exit 1 if the score (0..1) is below X")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    files = []
    for name in args.files:
        path = (ROOT / name).resolve()  # relative to the repository, wherever run from
        if not path.is_relative_to(ROOT):
            parser.error(f"{name} is not inside the repository {ROOT}")
        files.append(path.relative_to(ROOT).as_posix())
    args.files = list(dict.fromkeys(files))
    return args


def changed_lines(root: Path, rev: str, name: str) -> set[int]:
    """The lines of ``name`` (1-based, as in the working tree) added or changed since ``rev``.

    From ``git diff -U0 REV -- NAME``'s hunk headers. A hunk that only deletes lines marks the
    lines on either side of the cut: a mutant there is the nearest thing to undoing it."""
    proc = subprocess.run(["git", "-C", str(root), "diff", "-U0", "--no-color", "--no-ext-diff",
                           rev, "--", name], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolError(f"git diff {rev} -- {name} failed: {proc.stderr.strip()}")
    lines: set[int] = set()
    for match in re.finditer(r"^@@ -\S+ \+(\d+)(?:,(\d+))? @@", proc.stdout, re.MULTILINE):
        start, count = int(match[1]), int(match[2] or 1)
        lines.update(range(start, start + count) if count else (start, start + 1))
    return lines


def _touches(mutant: Mutant, source: bytes, lines: set[int]) -> bool:
    """Whether one of ``mutant``'s edits spans a line in ``lines``."""
    for start, end, _ in mutant.edits:
        first = source.count(b"\n", 0, start) + 1
        last = first + source.count(b"\n", start, max(start, end - 1))
        if any(line in lines for line in range(first, last + 1)):
            return True
    return False


def collect(root: Path, files: Sequence[str], only: Sequence[str],
            since: str | None = None, repo: Path = ROOT) -> list[Mutant]:
    """Every mutant of ``files`` under ``root``, kept by ``only`` (id substrings) and by
    ``since`` (lines changed since that revision of ``repo``, the tree ``root`` copies)."""
    mutants: list[Mutant] = []
    for name in files:
        path = root / name
        if not path.is_file():
            raise ToolError(f"no such file: {name}")
        source = path.read_bytes()
        found = enumerate_mutants(source, name)
        if since is not None:
            lines = changed_lines(repo, since, name)
            found = [m for m in found if _touches(m, source, lines)]
        mutants += found
    if only:
        mutants = [m for m in mutants if any(p in m.id for p in only)]
    return mutants


def _progress(done: int, total: int, results: Sequence[Result], start: float, last: Result
              ) -> None:
    s = summary(results)
    print(f"[{done:>{len(str(total))}}/{total}] killed {s['killed']} survived {s['survived']} "
          f"timeouts {s['timeouts']}  {time.monotonic() - start:6.1f}s  "
          f"{last.status:<8} {last.mutant.id}", file=sys.stderr, flush=True)


def execute(args: argparse.Namespace) -> tuple[list[Result], dict[str, object]]:
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="spk-mutants-") as tmp:
        base = Path(tmp) / "snapshot"
        count = snapshot(ROOT, base)
        mutants = collect(base, args.files, args.only, args.since)
        if not mutants:
            raise ToolError("no mutant matches --files/--only/--since")
        workers = min(args.jobs, len(mutants))
        copies: queue.Queue[Path] = queue.Queue()
        for i in range(workers):
            copy = Path(tmp) / f"worker{i}"
            shutil.copytree(base, copy, symlinks=True)
            check_copy(copy)
            copies.put(copy)
        print(f"{len(mutants)} mutants of {', '.join(args.files)}; {count} files copied to "
              f"{workers} worker copies", file=sys.stderr, flush=True)

        argv = command_argv(args.tests)
        first = copies.get()
        code, out, baseline = run(argv, first, None)
        copies.put(first)
        if code != 0:
            tail = "\n".join(out.rstrip().splitlines()[-25:])
            raise ToolError(f"the unmutated test run failed (exit {code}); fix the suite "
                            f"first, a mutant run against a red suite means nothing:\n{tail}")
        timeout = args.timeout or max(10.0, 3 * baseline + 5)
        print(f"baseline: green in {baseline:.1f}s; timeout per mutant {timeout:.0f}s",
              file=sys.stderr, flush=True)
        if not isolation():
            print("warning: no PID namespace could be made (unshare): test runs are not "
                  "confined, and a mutant that signals every process (kill(-1)) can end "
                  "unrelated ones", file=sys.stderr, flush=True)

        originals = {name: (base / name).read_bytes() for name in args.files}
        results: list[Result] = []
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            pending: set[Future[Result]] = {
                pool.submit(run_mutant, m, copies, originals, argv, timeout) for m in mutants
            }
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    results.append(future.result())
                    _progress(len(results), len(mutants), results, start, results[-1])
        except BaseException:
            _STOP.set()
            pool.shutdown(wait=False, cancel_futures=True)
            with _LIVE_LOCK:
                for proc in list(_LIVE):
                    _kill(proc)
            pool.shutdown(wait=True)
            raise
        pool.shutdown(wait=True)

    order = {m.id: i for i, m in enumerate(mutants)}
    results.sort(key=lambda r: order[r.mutant.id])
    meta: dict[str, object] = {
        "files": args.files, "since": args.since, "tests": args.tests, "jobs": workers,
        "timeout": round(timeout, 1),
        "baseline_seconds": round(baseline, 3),
        "isolation": " ".join(isolation()) or None,
        "elapsed_seconds": round(time.monotonic() - start, 3),
    }
    return results, meta


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    try:
        if args.list:
            for m in collect(ROOT, args.files, args.only, args.since):
                print(f"{m.id}\t{m.old}  →  {m.new}")
            return 0
        results, meta = execute(args)
    except ToolError as exc:
        print(f"mutants: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mutants: interrupted", file=sys.stderr)
        return 130
    print(report_text(results, meta))
    if args.json:
        args.json.write_text(json.dumps(report_json(results, meta), indent=2,
                                        ensure_ascii=False) + "\n", encoding="utf-8")
    score = summary(results)["score"]
    if args.min_score is not None and (not isinstance(score, float) or score < args.min_score):
        print(f"mutants: score below --min-score {args.min_score:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
