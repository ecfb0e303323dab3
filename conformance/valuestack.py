"""What a suspended frame holds on its value stack, by static analysis of its bytecode.

The explorer's state fingerprint (:class:`conformance.explore._State`) hashes a frame by its
code, the source span of its current instruction and its locals; a suspended generator also
by its sub-iterator (``gi_yieldfrom``). It does not hash the frame's *value stack*: a
temporary of an expression under evaluation (``a() + rng.random()``), a ``for`` loop's
iterator, a ``with`` block's exit, the exception an ``except`` block saved. Two states that
differ only there get one fingerprint, and the explorer prunes a schedule it should run.

:func:`hidden_state` tells, for a frame at an instruction, which values lie on its stack
*below* the operands of the instruction in flight: those are the hidden ones. The operands
themselves are not: a call's callable, self and arguments (PRECALL/CALL) are consumed by the
call, so they reach the future only through the callee, whose frame is hashed (its locals,
or, for a callee in C, what it touches); a ``yield from``'s sub-iterator is ``gi_yieldfrom``.
(A callee that rebinds a parameter drops its link to the argument, but so does the caller:
CALL pops its operands unread, so the old value has no future, short of a ``__del__``.)

The analysis is an abstract interpretation of CPython 3.11 bytecode: each stack slot is the
set of instructions that may have pushed it, propagated along fall-through, jump and
exception-table edges to a fixed point. Its pop/push table is checked against
:func:`dis.stack_effect` for every instruction it meets, so an opcode it misreads fails
loudly instead of shifting the stack. Other Python versions: :data:`SUPPORTED` is false.

What it cannot see: the state of a callee written in C that is part way through its work
(``sum(genexpr)``, ``sorted(xs, key=f)``, ``map``) while Python code above it draws. Such a
draw shows up as a generator or callback frame whose caller is not at a call to it, e.g. a
generator expression's iterator on the stack: this module flags the frame, not the C state.
Nor the exception a generator suspended in an ``except`` block is handling (it is kept in
the generator, not on its stack); the exception state that block saved is on the stack, so
such a site is flagged all the same.
"""

from __future__ import annotations

import bisect
import dis
import linecache
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: The bytecode analysed here is CPython 3.11's (PRECALL/CALL, the exception table, SEND).
SUPPORTED = sys.version_info[:2] == (3, 11)

_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, order=True)
class Producer:
    """An instruction that pushed a stack slot (``index``: which of its pushes), or an
    exception handler's entry (``opname`` ``<exception>`` or ``<lasti>``)."""

    offset: int
    index: int
    opname: str
    argrepr: str
    line: int | None


Slot = frozenset[Producer]
Stack = tuple[Slot, ...]

_ZERO = {"NOP", "RESUME", "EXTENDED_ARG", "CACHE", "PRECALL", "KW_NAMES", "JUMP_FORWARD",
         "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT", "SETUP_ANNOTATIONS", "DELETE_FAST",
         "DELETE_DEREF", "DELETE_NAME", "DELETE_GLOBAL", "COPY_FREE_VARS", "MAKE_CELL"}
#: (pops, pushes) of the fall-through, where they do not depend on the argument.
_FIXED: dict[str, tuple[int, int]] = {
    **{op: (0, 0) for op in _ZERO},
    **{op: (0, 1) for op in (
        "PUSH_NULL", "LOAD_CONST", "LOAD_FAST", "LOAD_NAME", "LOAD_CLOSURE", "LOAD_DEREF",
        "LOAD_CLASSDEREF", "LOAD_BUILD_CLASS", "LOAD_ASSERTION_ERROR", "IMPORT_FROM",
        "GET_LEN", "MATCH_MAPPING", "MATCH_SEQUENCE", "MATCH_KEYS", "WITH_EXCEPT_START",
        "GET_ANEXT",
        # On the first resumption the sent value (None) is pushed, and popped at once.
        "RETURN_GENERATOR")},
    **{op: (1, 0) for op in (
        "POP_TOP", "STORE_FAST", "STORE_NAME", "STORE_GLOBAL", "STORE_DEREF", "DELETE_ATTR",
        "POP_EXCEPT", "PRINT_EXPR", "IMPORT_STAR", "LIST_APPEND", "SET_ADD", "LIST_EXTEND",
        "SET_UPDATE", "DICT_UPDATE", "DICT_MERGE", "RETURN_VALUE", "RERAISE",
        "POP_JUMP_FORWARD_IF_FALSE", "POP_JUMP_FORWARD_IF_TRUE", "POP_JUMP_FORWARD_IF_NONE",
        "POP_JUMP_FORWARD_IF_NOT_NONE", "POP_JUMP_BACKWARD_IF_FALSE",
        "POP_JUMP_BACKWARD_IF_TRUE", "POP_JUMP_BACKWARD_IF_NONE",
        "POP_JUMP_BACKWARD_IF_NOT_NONE", "JUMP_IF_TRUE_OR_POP", "JUMP_IF_FALSE_OR_POP")},
    **{op: (1, 1) for op in (
        "UNARY_POSITIVE", "UNARY_NEGATIVE", "UNARY_NOT", "UNARY_INVERT", "GET_ITER",
        "GET_YIELD_FROM_ITER", "GET_AWAITABLE", "GET_AITER", "LOAD_ATTR", "LIST_TO_TUPLE",
        "YIELD_VALUE", "ASYNC_GEN_WRAP", "CHECK_EXC_MATCH", "SEND")},
    **{op: (1, 2) for op in ("LOAD_METHOD", "BEFORE_WITH", "BEFORE_ASYNC_WITH",
                             "PUSH_EXC_INFO")},
    **{op: (2, 0) for op in ("STORE_ATTR", "DELETE_SUBSCR", "MAP_ADD", "END_ASYNC_FOR")},
    **{op: (2, 1) for op in ("BINARY_OP", "BINARY_SUBSCR", "COMPARE_OP", "IS_OP",
                             "CONTAINS_OP", "IMPORT_NAME", "PREP_RERAISE_STAR")},
    "CHECK_EG_MATCH": (2, 2),
    "STORE_SUBSCR": (3, 0),
    "MATCH_CLASS": (3, 1),
    "COPY": (0, 1),
    "SWAP": (0, 0),
}
#: Where this table departs from ``dis.stack_effect`` on purpose: the compiler books a call's
#: pops on its PRECALL, but at run time every operand stays on the stack until CALL (a frame
#: suspended in a call reports either instruction, see ``explore._where``); and the
#: generator's first resumption pushes the sent value.
_NOT_THE_COMPILERS = frozenset({"PRECALL", "CALL", "RETURN_GENERATOR"})
_TERMINAL = frozenset({"RETURN_VALUE", "RAISE_VARARGS", "RERAISE"})
_UNCONDITIONAL = frozenset({"JUMP_FORWARD", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT"})


def _effect(ins: dis.Instruction, jump: bool) -> tuple[int, int]:
    """(pops, pushes) of ``ins``, on its jump or its fall-through."""
    op, arg = ins.opname, ins.arg or 0
    if jump:
        if op in ("JUMP_IF_TRUE_OR_POP", "JUMP_IF_FALSE_OR_POP"):
            return 0, 0
        if op == "FOR_ITER":  # exhausted: the iterator is popped
            return 1, 0
        if op == "SEND":  # the sub-iterator returned: receiver and value become its result
            return 2, 1
    if op == "FOR_ITER":
        return 0, 1
    if op in _FIXED:
        return _FIXED[op]
    if op == "LOAD_GLOBAL":
        return 0, 1 + (arg & 1)
    if op == "UNPACK_SEQUENCE":
        return 1, arg
    if op == "UNPACK_EX":
        return 1, (arg & 0xFF) + (arg >> 8) + 1
    if op in ("BUILD_TUPLE", "BUILD_LIST", "BUILD_SET", "BUILD_STRING", "BUILD_SLICE"):
        return arg, 1
    if op == "BUILD_MAP":
        return 2 * arg, 1
    if op == "BUILD_CONST_KEY_MAP":
        return arg + 1, 1
    if op == "MAKE_FUNCTION":
        return 1 + bin(arg & 0x0F).count("1"), 1
    if op == "CALL":
        return arg + 2, 1
    if op == "CALL_FUNCTION_EX":
        return 3 + (arg & 1), 1
    if op == "FORMAT_VALUE":
        return 1 + ((arg & 0x04) == 0x04), 1
    if op == "RAISE_VARARGS":
        return arg, 0
    raise NotImplementedError(f"no stack model for {op}")


def _successors(ins: dis.Instruction, following: int | None) -> list[tuple[int, bool]]:
    if ins.opname in _TERMINAL:
        return []
    target: int | None = (ins.argval if ins.opcode in dis.hasjrel or ins.opcode in dis.hasjabs
                          else None)
    if ins.opname in _UNCONDITIONAL:
        assert target is not None
        return [(target, True)]
    out = [(following, False)] if following is not None else []
    if target is not None:
        out.append((target, True))
    return out


class Analysis:
    """The stack before each reachable instruction of one code object."""

    def __init__(self, code: types.CodeType) -> None:
        self.code = code
        self.instructions = {i.offset: i for i in dis.get_instructions(code)}
        offsets = self.offsets = sorted(self.instructions)
        self._following = dict(zip(offsets, [*offsets[1:], None], strict=True))
        self.stacks: dict[int, Stack] = {}
        self._flow()

    def _push(self, ins: dis.Instruction, index: int) -> Slot:
        return frozenset({Producer(ins.offset, index, ins.opname, ins.argrepr,
                                   ins.positions.lineno if ins.positions else None)})

    def _after(self, ins: dis.Instruction, stack: Stack, jump: bool) -> Stack:
        pops, pushes = _effect(ins, jump)
        if ins.opname not in _NOT_THE_COMPILERS:
            expected = dis.stack_effect(ins.opcode, ins.arg if ins.opcode >= dis.HAVE_ARGUMENT
                                        else None, jump=jump)
            if pushes - pops != expected:
                raise AssertionError(f"stack model of {ins.opname} {ins.arg} (jump={jump}) is "
                                     f"{pushes - pops}, dis says {expected}")
        if pops > len(stack):
            raise AssertionError(f"{self.code.co_qualname}: stack underflow at {ins.offset} "
                                 f"{ins.opname}")
        if ins.opname == "COPY":
            return (*stack, stack[-(ins.arg or 0)])
        if ins.opname == "SWAP":
            n = ins.arg or 0
            swapped = list(stack)
            swapped[-1], swapped[-n] = swapped[-n], swapped[-1]
            return tuple(swapped)
        kept = stack[:len(stack) - pops]
        return (*kept, *(self._push(ins, i) for i in range(pushes)))

    def _flow(self) -> None:
        handlers = [(e.start, e.end, e.target, e.depth, e.lasti)
                    for e in dis._parse_exception_table(self.code)]  # type: ignore[attr-defined]
        work = [0]
        self.stacks[0] = ()
        while work:
            offset = work.pop()
            ins, stack = self.instructions[offset], self.stacks[offset]
            edges = [(t, self._after(ins, stack, jump))
                     for t, jump in _successors(ins, self._following[offset])]
            for start, end, target, depth, lasti in handlers:
                if start <= offset < end:
                    entry = self.instructions[target]
                    pushed: list[Slot] = []
                    if lasti:
                        pushed.append(frozenset({Producer(target, 0, "<lasti>", "", None)}))
                    pushed.append(frozenset({Producer(target, 1, "<exception>", "",
                                                      entry.positions.lineno
                                                      if entry.positions else None)}))
                    edges.append((target, (*stack[:depth], *pushed)))
            for target, after in edges:
                before = self.stacks.get(target)
                if before is None:
                    self.stacks[target] = after
                    work.append(target)
                    continue
                if len(before) != len(after):
                    raise AssertionError(f"{self.code.co_qualname}: stack depths {len(before)} "
                                         f"and {len(after)} meet at {target}")
                merged = tuple(a | b for a, b in zip(before, after, strict=True))
                if merged != before:
                    self.stacks[target] = merged
                    work.append(target)

    def operands(self, offset: int) -> int:
        """How many of the slots at ``offset`` belong to the instruction in flight there."""
        ins = self.instructions[offset]
        op, arg = ins.opname, ins.arg or 0
        if op in ("PRECALL", "CALL"):
            return arg + 2
        if op == "YIELD_VALUE":
            # The yielded value has left the stack; under ``yield from``/``await`` (resumed
            # by RESUME 2 or 3), the receiver below it is the generator's gi_yieldfrom.
            after = self.instructions.get(self._following[offset] or -1)
            delegating = after is not None and after.opname == "RESUME" and (after.arg or 0) >= 2
            return 1 + delegating
        if op == "SEND":
            return 2
        if op == "FOR_ITER":
            return 1
        if op == "RETURN_GENERATOR":  # created, never started
            return 0
        return _effect(ins, False)[0]


#: Instructions at which a frame may be found by the explorer without anything to audit:
#: in a call, at a yield, delegating to a sub-generator, or not started. Anywhere else it
#: is in an implicit call (a property, an operator, an iterator's ``__next__``): flagged.
EXPECTED = frozenset({"PRECALL", "CALL", "CALL_FUNCTION_EX", "YIELD_VALUE", "SEND",
                      "RETURN_GENERATOR"})

_ANALYSES: dict[types.CodeType, Analysis] = {}


def analysis(code: types.CodeType) -> Analysis:
    found = _ANALYSES.get(code)
    if found is None:
        found = _ANALYSES[code] = Analysis(code)
    return found


def describe(producer: Producer, code: types.CodeType) -> str:
    """What a hidden slot holds, for a human and for an allowlist: its kind and origin, by
    source text and opcode (no line numbers, which every edit above would shift)."""
    op = producer.opname
    text = _line(code, producer.line)
    if op == "GET_ITER":
        return f"for-loop iterator of `{text}`"
    if op in ("GET_YIELD_FROM_ITER", "GET_AWAITABLE", "GET_AITER", "GET_ANEXT"):
        return f"sub-iterator of `{text}`"
    if op in ("BEFORE_WITH", "BEFORE_ASYNC_WITH"):
        return f"with-{'exit' if producer.index == 0 else 'enter result'} of `{text}`"
    if op == "PUSH_EXC_INFO":
        return f"saved {'exception state' if producer.index == 0 else 'exception'} of a handler"
    if op == "<exception>":
        return f"exception being handled at `{text}`"
    if op == "<lasti>":
        return "handler's lasti"
    if op in ("BUILD_LIST", "BUILD_SET", "BUILD_MAP") and code.co_name.startswith("<"):
        return f"comprehension accumulator of `{text}`"
    if op == "LOAD_CONST":
        return f"constant {producer.argrepr}"
    if op == "LOAD_FAST" and producer.argrepr == ".0":
        return f"iterator argument of `{text}`"
    if op in ("CALL", "CALL_FUNCTION_EX"):
        return f"result of a call in `{text}`"
    name = producer.argrepr.removeprefix("NULL + ")
    if op == "LOAD_GLOBAL" and producer.argrepr.startswith("NULL + "):
        return f"NULL of a call to {name}" if producer.index == 0 else f"global {name}"
    if op == "LOAD_METHOD":
        return f"method .{name}" if producer.index == 0 else f"receiver of .{name}"
    detail = f" {producer.argrepr}" if producer.argrepr else ""
    return f"temporary {op}{detail}"


@dataclass(frozen=True)
class Site:
    """A frame position at which something lies hidden on the value stack."""

    #: ``<file>:<qualname>: <source line>``, stable under edits elsewhere in the file.
    key: str
    #: What lies hidden, sorted (one description per kind and origin).
    hidden: tuple[str, ...]
    #: ``<file>:<line>``, to find it.
    location: str


def where(code: types.CodeType) -> str:
    """The file of ``code``, relative to the repository (or to site-packages)."""
    path = Path(code.co_filename)
    try:
        return path.resolve().relative_to(_ROOT).as_posix()
    except ValueError:
        parts = path.parts
        return "/".join(parts[parts.index("site-packages") + 1:]) if (
            "site-packages" in parts) else path.name


def hidden_state(code: types.CodeType, offset: int, *, draw: bool = False) -> Site | None:
    """The hidden slots of a frame of ``code`` at instruction ``offset`` (``f_lasti``), or
    None when there are none and the instruction is an expected one (:data:`EXPECTED`).

    ``draw``: the frame is the one that draws (the top of the fingerprinted stack). Its call
    in flight is the draw (``rng.random()``, ``rng.expovariate(rate)``, ``self._edge(rng)``),
    whose callee runs in frames the fingerprint skips (``random``, the explorer): the call's
    arguments are hashed by nobody, so they are hidden too (``draw-call argument``)."""
    found = analysis(code)
    # A specialised call (CALL_PY_EXACT_ARGS) leaves ``f_lasti`` on its last inline cache
    # entry: the instruction is the one that owns the entry.
    offset = found.offsets[bisect.bisect_right(found.offsets, offset) - 1]
    ins = found.instructions[offset]
    if offset not in found.stacks:
        raise AssertionError(f"{where(code)}:{code.co_qualname}: no reachable instruction at "
                             f"{offset}")
    stack = found.stacks[offset]

    def what(slot: Slot) -> str:
        return " | ".join(sorted({describe(p, code) for p in slot}))

    hidden = {what(slot) for slot in stack[:max(len(stack) - found.operands(offset), 0)]}
    if draw and ins.opname in ("PRECALL", "CALL") and ins.arg:
        hidden |= {f"draw-call argument: {what(slot)}" for slot in stack[-ins.arg:]}
    if ins.opname not in EXPECTED:
        hidden.add(f"in flight: implicit call by {ins.opname} {ins.argrepr}".rstrip())
    if not hidden:
        return None
    line = ins.positions.lineno if ins.positions else None
    return Site(f"{where(code)}:{code.co_qualname}: {_line(code, line)}", tuple(sorted(hidden)),
                f"{where(code)}:{line}")


def hidden_sites(points: Iterable[tuple[types.CodeType, int, bool]]) -> dict[str, Site]:
    """The sites with hidden state among frame positions ``(code, f_lasti, draw)`` (``draw``:
    see :func:`hidden_state`), by key. Two positions on one source line are one site."""
    sites: dict[str, Site] = {}
    for code, offset, draw in points:
        site = hidden_state(code, offset, draw=draw)
        if site is None:
            continue
        known = sites.get(site.key)
        if known is not None:
            site = Site(site.key, tuple(sorted({*known.hidden, *site.hidden})),
                        min(known.location, site.location))
        sites[site.key] = site
    return sites


def _line(code: types.CodeType, line: int | None) -> str:
    if line is None:
        return "?"
    return linecache.getline(code.co_filename, line).strip() or "?"
