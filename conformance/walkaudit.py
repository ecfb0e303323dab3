"""What the explorer's state walk leaves out of a fingerprint, recorded while it walks.

The explorer's fingerprint (:class:`conformance.explore._State`) walks the run's state by
value from its roots: the locals of each frame of the draw's call stack, the world's
attributes, each encoder's, and each event of SimPy's queue. Two shortcuts of the walk leave
objects out, and an object left out is sound only if what it holds is hashed anyway:

* **a frame's ``self``** is not walked: neither a call-stack frame's (``_State._locals``) nor a
  suspended generator's (``_State._walk_object``). That is right for the world and the
  encoders (named roots, walked as roots) and for the run's constants (``_OPAQUE``), and for
  any object the walk reaches by value from elsewhere *in the same fingerprint* (a protocol
  instance is a local of ``Encoder.attempt``). A helper object whose state only its own
  frames' ``self`` holds would be hashed by nobody;
* **cut-offs**: an object deeper than ``explore._MAX_DEPTH`` from its root, or already on the
  walk's path (a cycle), is hashed by its type name alone. A cycle's object is walked by value
  on the path above it; an object cut off by depth is hashed only if the walk reaches it, by
  value, along some other path no deeper than the limit.

:class:`WalkAudit` wraps ``_State.__call__``, ``_State._walk`` and ``_State._locals`` (with a
``pytest.MonkeyPatch``: the fingerprints, hence the explorer's counts, are unchanged) and
checks, at every fingerprint, each ``self`` left out and each object cut off against what the
walk did reach by value in that fingerprint, and against the allowlists it is given (audited
by type, each with its reason). What neither covers is a *finding*: a way two states that
differ could get one fingerprint, and the explorer skip a schedule it must run.

An object the walk reaches through its SimPy-event branch is walked only in part (its
triggered flag, value, process generator and callbacks: not a process's ``_target``, a
condition's ``_events``), so a ``self`` reached only that way needs an audit too ("walked in
part"). Two containers the walk builds itself are identified by their owner: a generator's
locals (a new dict at each walk, without ``self``) by its frame, a closure's cells by the
function.
"""

from __future__ import annotations

import dataclasses
import enum
import types
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import simpy

import conformance.explore as explore_module

if TYPE_CHECKING:
    import pytest

#: What became of a ``self`` left out, or of an object cut off, in one fingerprint.
UNREACHED = "not reached by value"
PART = "walked in part"
DEPTH = "cut off by depth"
CYCLE = "cut off as a cycle"


@dataclass(frozen=True, order=True)
class Finding:
    """One kind of object left out: ``kind`` ("self", or a cut-off), the object's type
    (``module.qualname``), what became of it (:data:`UNREACHED`, ...) and where: a ``self``'s
    frame (its code's qualname), or a cut-off object's path of types from its root."""

    kind: str
    type: str
    status: str
    where: str


def type_name(obj: Any) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _label(obj: Any) -> str:
    if isinstance(obj, types.GeneratorType):
        return f"<gen {obj.gi_code.co_qualname}>"
    if isinstance(obj, types.MethodType | types.FunctionType):
        return f"<{type(obj).__name__} {obj.__qualname__}>"
    return type(obj).__name__


def _member(parent: Any, obj: Any) -> str:
    """Where ``obj`` is in ``parent``: its key, index or attribute (for a finding's path)."""
    if isinstance(parent, dict):
        return next((f"[{k!r}]" for k, v in parent.items() if v is obj), "[a key]")
    if isinstance(parent, types.GeneratorType):
        return ".gi_yieldfrom" if parent.gi_yieldfrom is obj else ".<locals>"
    if isinstance(parent, list | tuple):
        return next((f"[{i}]" for i, v in enumerate(parent) if v is obj), "")
    names = [*getattr(parent, "__dict__", {}),
             *(s for c in type(parent).__mro__ for s in getattr(c, "__slots__", ()))]
    return next((f".{n}" for n in names if getattr(parent, n, None) is obj), "")


def _partial(obj: Any) -> bool:
    """Whether the walk hashes only part of ``obj``'s state (``_State._walk_object``)."""
    if isinstance(obj, simpy.Event):
        return True
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name for f in dataclasses.fields(obj)}
        return not set(getattr(obj, "__dict__", {})) <= fields
    return False


class WalkAudit:
    """Records, at each fingerprint, the ``self`` objects and cut-off objects the walk leaves
    out, and keeps those neither reached by value elsewhere in it nor audited.

    ``selves``: audited types of ``self`` (``module.qualname`` -> (status, reason));
    ``cuts``: audited types of cut-off objects, likewise (status :data:`DEPTH` or
    :data:`CYCLE`)."""

    def __init__(self, selves: Mapping[str, tuple[str, str]],
                 cuts: Mapping[str, tuple[str, str]]) -> None:
        self.selves, self.cuts = selves, cuts
        #: Unaudited findings: how many fingerprints had each, and the first one's draw site.
        self.findings: Counter[Finding] = Counter()
        self.examples: dict[Finding, str] = {}
        #: Audited findings met (by type and status), and every ``self``/cut-off checked.
        self.audited: Counter[tuple[str, str, str]] = Counter()
        self.checked: Counter[str] = Counter()
        self.fingerprints = 0
        self.deepest = 0
        # The fingerprint under way: what was walked by value (identity -> (the object, kept
        # alive so no id is reused, and whether in part)), the selves left out and the
        # cut-offs, the path of objects and labels from the current root.
        self._walked: dict[Any, tuple[Any, bool]] = {}
        self._left_out: list[tuple[str, Any]] = []
        self._cut: list[tuple[str, Any, Any, str]] = []
        self._path: list[Any] = []
        self._labels: list[str] = []
        self._root: str | None = None
        self._frame: types.FrameType | None = None

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        state = explore_module._State
        walk, local, call = state._walk, state._locals, state.__call__
        audit = self

        def recorded_walk(self: Any, obj: Any, depth: int, active: set[int]) -> Any:
            if obj is None or isinstance(obj, bool | int | float | str | bytes | enum.Enum):
                return walk(self, obj, depth, active)
            if id(obj) in self._names or isinstance(obj, explore_module._OPAQUE):
                return walk(self, obj, depth, active)
            parent = audit._path[-1] if audit._path else None
            ident = audit._identity(obj, parent)
            if depth == 0 and audit._frame is not None:
                ident = ("locals", id(audit._frame))  # a call-stack frame's
            rooted = depth == 0 and audit._root is None
            if rooted:  # the world, an encoder, or an event of the queue
                audit._labels.append(self._names.get(
                    next((id(o) for o in (self.world, *self.encoders) if vars(o) is obj), 0),
                    "queue"))
            try:
                if depth > explore_module._MAX_DEPTH or id(obj) in active:
                    status = DEPTH if depth > explore_module._MAX_DEPTH else CYCLE
                    where = " > ".join(audit._labels) + _member(parent, obj)
                    audit._cut.append((status, ident, obj, where))
                    return walk(self, obj, depth, active)
                audit._walked[ident] = (obj, _partial(obj))
                audit.deepest = max(audit.deepest, depth)
                frame = obj.gi_frame if isinstance(obj, types.GeneratorType) else None
                if frame is not None and "self" in frame.f_locals:
                    audit._left_out.append((obj.gi_code.co_qualname, frame.f_locals["self"]))
                audit._path.append(obj)
                audit._labels.append(_label(obj))
                try:
                    return walk(self, obj, depth, active)
                finally:
                    audit._path.pop()
                    audit._labels.pop()
            finally:
                if rooted:
                    audit._labels.pop()

        def recorded_locals(self: Any, frame: types.FrameType) -> Any:
            qualname = frame.f_code.co_qualname
            if "self" in frame.f_locals:
                audit._left_out.append((qualname, frame.f_locals["self"]))
            audit._root, audit._frame = f"frame {qualname}", frame
            audit._labels.append(audit._root)
            try:
                return local(self, frame)
            finally:
                audit._labels.pop()
                audit._root = audit._frame = None

        def recorded_call(self: Any, site: str, frame: types.FrameType) -> bytes:
            try:
                return call(self, site, frame)
            finally:
                audit._judge(self, site)

        monkeypatch.setattr(state, "_walk", recorded_walk)
        monkeypatch.setattr(state, "_locals", recorded_locals)
        monkeypatch.setattr(state, "__call__", recorded_call)

    @staticmethod
    def _identity(obj: Any, parent: Any) -> Any:
        """The walk's own containers are new at each walk: a frame's locals (a dict without
        ``self``: a generator's, or a call-stack frame's, which may be a running generator's)
        stand for the frame, and a function's cells (a list) for the function."""
        if isinstance(parent, types.GeneratorType) and type(obj) is dict:
            return ("locals", id(parent.gi_frame))
        if isinstance(parent, types.FunctionType) and type(obj) is list:
            return ("cells", id(parent))
        return id(obj)

    def _judge(self, state: Any, site: str) -> None:
        self.fingerprints += 1
        walked = self._walked
        for qualname, obj in self._left_out:
            self.checked["self"] += 1
            if id(obj) in state._names or isinstance(obj, explore_module._OPAQUE):
                continue
            reached = walked.get(id(obj))
            if reached is not None and not reached[1]:
                continue
            self._note("self", obj, UNREACHED if reached is None else PART, qualname,
                       self.selves, site)
        for status, ident, obj, path in self._cut:
            self.checked[status] += 1
            if ident not in walked:
                self._note("cut", obj, status, path, self.cuts, site)
        walked.clear()
        self._left_out.clear()
        self._cut.clear()

    def _note(self, kind: str, obj: Any, status: str, where: str,
              allowed: Mapping[str, tuple[str, str]], site: str) -> None:
        name = type_name(obj)
        if allowed.get(name, ("",))[0] == status:
            self.audited[(kind, name, status)] += 1
            return
        finding = Finding(kind, name, status, where)
        self.findings[finding] += 1
        self.examples.setdefault(finding, site)

    def report(self) -> list[str]:
        """The unaudited findings, for a failure message (empty: none)."""
        lines = []
        for f in sorted(self.findings):
            lines.append(f"  {f.kind} {f.type}: {f.status}, in {self.findings[f]} "
                         f"fingerprint(s) (first at {self.examples[f]})")
            lines.append(f"      {'frame' if f.kind == 'self' else 'path'}: {f.where}")
        return lines
