"""The documentation names things: commands, flags, files, settings, metrics, log codes, code,
defaults, formulas. Each must exist, and say what the code does.

Covers README.md, tests/README.md and docs/*.md. Fast (no simulation, no subprocess): the
command lines are checked against each program's own ``--help``, run in this process, and the
settings against ``verifier.Settings`` itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import io
import pkgutil
import re
import runpy
import sys
import warnings
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

import verifier
from verifier import ConfigurationError, Settings, TimingModel

ROOT = Path(__file__).resolve().parent.parent
DOCS = (ROOT / "README.md", ROOT / "tests" / "README.md", *sorted((ROOT / "docs").glob("*.md")))
SOURCE_DIRS = ("verifier", "sim", "conformance", "benchmarks", "examples")

#: File names the docs mention that are not files of this repository: what the commands write
#: (research, sweep and replay outputs, an example JSON path) and an upstream document.
NOT_REPO_FILES = frozenset({
    "research.txt", "research.json", "research.csv", "runs.csv", "cost.csv", "ablation.csv",
    "lie_rate.csv", "sensitivity.csv", "sweep.csv", "sweep.json", "lie_rate.png",
    "ablation.png", "sensitivity.png", "duplicates.png", "timeline.png", "explore.json",
    "out.json", "gateway-monitor-verification.md",
})


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@cache
def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@cache
def _fenced_and_prose(path: Path) -> tuple[list[tuple[int, str]], str]:
    """The fenced blocks' lines (line number, text) and the prose with the fences blanked."""
    fenced: list[tuple[int, str]] = []
    prose: list[str] = []
    inside = False
    for number, line in enumerate(_text(path).split("\n"), 1):
        if line.strip().startswith("```"):
            inside = not inside
            prose.append("")
            continue
        if inside:
            fenced.append((number, line))
        prose.append("" if inside else line)
    return fenced, "\n".join(prose)


@cache
def code_spans(path: Path) -> tuple[tuple[int, str], ...]:
    """Every inline `code` span of a document (a span may break across lines)."""
    _, prose = _fenced_and_prose(path)
    return tuple((prose.count("\n", 0, m.start()) + 1, re.sub(r"\s*\n\s*", " ", m.group(1)))
                 for m in re.finditer(r"`([^`]+)`", prose))


@cache
def all_code_spans() -> tuple[tuple[str, int, str], ...]:
    return tuple((_rel(path), number, span) for path in DOCS for number, span in code_spans(path))


@cache
def source_text() -> str:
    parts = [p.read_text(encoding="utf-8") for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py")]
    parts.append((ROOT / ".ci" / "run").read_text(encoding="utf-8"))
    return "\n".join(parts)


# --------------------------------------------------------------------------- files


def test_every_file_the_docs_name_exists():
    files = {_rel(p) for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts}
    names = {f.rsplit("/", 1)[-1] for f in files}
    missing = []
    pattern = re.compile(r"(?<![\w./-])((?:\.?[\w-]+/)*[\w-]+\.(?:py|toml|json|ya?ml|md|ini))\b")
    for path in DOCS:
        for number, line in enumerate(_text(path).split("\n"), 1):
            for match in pattern.finditer(line):
                name = match.group(1).removeprefix("./")
                if name in NOT_REPO_FILES:
                    continue
                if "/" in name:
                    found = any(prefix + name in files
                                for prefix in ("", "tests/", "docs/", "sim/", "verifier/"))
                else:
                    found = name in names
                if not found:
                    missing.append(f"{_rel(path)}:{number}: {name}")
    assert missing == []


def test_docs_index_lists_every_document():
    index = _text(ROOT / "docs" / "README.md")
    unlisted = [p.name for p in (ROOT / "docs").glob("*.md")
                if p.name != "README.md" and f"({p.name})" not in index]
    assert unlisted == []


def test_section_citations_name_a_section_that_exists():
    """``docs/X.md, "Section"`` in code and docs: the quoted text must be in that document
    (docs/README.md: code cites the docs by file and section)."""
    docs = {p.name: re.sub(r"\s+", " ", _text(p)).lower() for p in (ROOT / "docs").glob("*.md")}
    cite = re.compile(r"(contract|safety-model|exploration|enhancements|push|ablation|history"
                      r"|mutation)\.md`?,\s*[\"“]([^\"”]{3,80})[\"”]")
    wrong = []
    files = [*DOCS, *(p for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py"))]
    for path in files:
        # Comments and docstrings wrap: join the lines, dropping comment markers.
        text = re.sub(r"\n\s*(?:#:?\s*)?", " ", _text(path))
        for match in cite.finditer(text):
            section = re.sub(r"\s+", " ", match.group(2)).strip().lower()
            if section not in docs[match.group(1) + ".md"]:
                wrong.append(f"{_rel(path)}: {match.group(1)}.md, {match.group(2)!r}")
    assert wrong == []


# --------------------------------------------------------------------------- commands


def _help(kind: str, target: str, argv: list[str]) -> str:
    out = io.StringIO()
    saved = sys.argv
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            sys.argv = [target, *argv, "--help"]
            with pytest.raises(SystemExit) as exited, warnings.catch_warnings():
                # Another test may have imported ``sim.__main__`` (for its ``main``): runpy
                # warns that it runs the module a second time, which is what is meant here.
                warnings.filterwarnings("ignore", "'.*' found in sys.modules",
                                        RuntimeWarning)
                if kind == "module":
                    runpy.run_module(target, run_name="__main__", alter_sys=False)
                else:
                    runpy.run_path(str(ROOT / target), run_name="__main__")
    finally:
        sys.argv = saved
    assert exited.value.code in (0, None), f"{target} {argv} --help failed"
    return out.getvalue()


@cache
def help_text(program: str, sub: str | None) -> str:
    if program.startswith("benchmarks/"):
        return _help("path", program, [])
    return _help("module", program, [sub] if sub else [])


COMMAND = re.compile(r"python3? -m (sim|verifier|conformance)(?: ([a-z]+))?"
                     r"|python (benchmarks/\w+\.py)")


def documented_commands() -> Iterator[tuple[str, str, str | None, str]]:
    """(where, program, subcommand, the rest of the line) for every command line shown."""
    for path in DOCS:
        fenced, _ = _fenced_and_prose(path)
        pending, start = "", 0
        for number, line in fenced:  # continuation lines joined
            pending, start = (pending + " " + line.rstrip("\\"), start) if pending else (
                line.rstrip("\\"), number)
            if not line.rstrip().endswith("\\"):
                yield from _commands_in(f"{_rel(path)}:{start}", pending)
                pending = ""
        for number, span in code_spans(path):
            yield from _commands_in(f"{_rel(path)}:{number}", span)


def _commands_in(where: str, text: str) -> Iterator[tuple[str, str, str | None, str]]:
    matches = list(COMMAND.finditer(text))
    for i, match in enumerate(matches):
        rest = text[match.end():matches[i + 1].start() if i + 1 < len(matches) else None]
        rest = rest.split(" -- ")[0].split("#")[0]  # after --: the work command's own
        if match.group(3):
            yield where, match.group(3), None, rest
        else:
            yield where, match.group(1), match.group(2), rest


def test_every_documented_command_and_flag_exists():
    wrong = []
    for where, program, sub, rest in documented_commands():
        text = help_text(program, sub)
        if sub and program != "conformance" and f"{sub} " not in help_text(program, None):
            wrong.append(f"{where}: python -m {program} {sub}: no such command")
            continue
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
            if not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text):
                wrong.append(f"{where}: {program} {sub or ''} {flag}")
    assert wrong == []


def test_every_flag_the_docs_mention_exists_somewhere():
    """A flag in prose (`--cooldown`) belongs to one of the programs, or to a tool named here."""
    programs = [("sim", None), ("verifier", None), ("conformance", "explore")]
    programs += [("sim", s) for s in ("run", "sweep", "research", "replay", "live", "serve")]
    programs += [("verifier", s) for s in ("check", "run")]
    programs += [(f"benchmarks/{p.name}", None) for p in (ROOT / "benchmarks").glob("*.py")]
    known = " ".join(help_text(p, s) for p, s in programs)
    others = {"--hypothesis-profile", "--protocol", "--stop-timeout"}  # pytest, conftest, docker
    unknown = sorted({f"{_rel(path)}: {flag}" for path in DOCS
                      for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", _text(path))
                      if flag not in others
                      and not re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", known)})
    assert unknown == []


# --------------------------------------------------------------------------- settings


@cache
def settings_by_variable() -> dict[str, str]:
    return Settings.from_env({}, dotenv=None, check_chain=False).describe()


#: Names the docs show that are not settings, on purpose: misspellings the settings refuse or
#: warn about, the 3Speak encoder's own variable, and the wildcards.
NOT_SETTINGS = frozenset({"VERIFER_CHAIN", "GATWAY_AID_ENABLED", "ENCODER_PUBLIC_KEY"})


def test_every_documented_setting_is_read_and_every_setting_documented():
    settings = settings_by_variable()
    named = {m for _, _, span in all_code_spans()
             for m in re.findall(r"\b(?:VERIFIER|GATEWAY|ENCODER|MONGODB|DATABASE)_[A-Z0-9_]+\b",
                                 span)}
    unknown = sorted(n for n in named
                     if n not in settings and n not in NOT_SETTINGS
                     and not re.search(rf"\b{n}\b", source_text()))  # aid's error codes
    assert unknown == [], "named in the docs, read by nothing"
    readme = _text(ROOT / "README.md")
    configuration = readme[readme.index("### Configuration"):
                           readme.index("### `python -m verifier check`")]
    undocumented = sorted(v for v in settings
                          if not re.search(rf"`{v}(=[^`]*)?`", configuration))
    assert undocumented == [], "read by Settings, not in the README's Configuration"
    assert sorted(n for n in named if n.startswith("VERIFIER_") and n not in settings
                  and n not in NOT_SETTINGS) == [], "an unknown VERIFIER_* name is refused"


def test_documented_setting_defaults():
    described = settings_by_variable()
    readme = re.sub(r"\s+", " ", _text(ROOT / "README.md"))
    cache_s = re.search(r"`VERIFIER_STATUS_CACHE_S` \([^)]*?; (\d+) by default", readme)
    assert cache_s and float(cache_s.group(1)) == float(described["VERIFIER_STATUS_CACHE_S"])
    assert "`VERIFIER_CHAIN` (`hardened` by default" in readme
    assert described["VERIFIER_CHAIN"] == "hardened"
    assert described["VERIFIER_BACKOFF"] == "true" and "`VERIFIER_BACKOFF` (jittered" in readme
    assert described["VERIFIER_PUSH"] == "false"
    # The monitor is off unless GATEWAY_MONITOR_ENABLED says otherwise (and the hardened chain
    # then refuses to start without the database): no doc may say it is read by default.
    assert described["GATEWAY_MONITOR_ENABLED"] == "false"
    claims = ["reads the public monitor unless told otherwise", "monitor by default"]
    assert [c for c in claims for p in DOCS if c in re.sub(r"\s+", " ", _text(p))] == []


def _floor(variable: str) -> float | None:
    try:
        Settings.from_env({variable: "0.001"}, dotenv=None, check_chain=False)
    except ConfigurationError as exc:
        found = re.search(r"must be at least ([0-9.]+) s \(the floor", str(exc))
        return float(found.group(1)) if found else None
    return None


def test_timing_floors_are_documented():
    floors = {v: f for v in verifier.TIMING_VARIABLES.values() if (f := _floor(v)) is not None}
    assert floors, "no timing setting has a floor: the test lost its subject"
    readme = re.sub(r"\s+", " ", _text(ROOT / "README.md"))
    model = re.sub(r"\s+", " ", _text(ROOT / "docs" / "safety-model.md"))
    paragraph = model[model.index("`TIMING_FLOORS`") - 300:model.index("`TIMING_FLOORS`") + 300]
    missing = []
    for variable, floor in floors.items():
        if not re.search(rf"`{variable}` (may not be set )?below {floor:g} s", readme):
            missing.append(f"README: {variable} >= {floor:g} s")
        if f"{floor:g} s" not in paragraph:
            missing.append(f"docs/safety-model.md (TIMING_FLOORS): {variable} >= {floor:g} s")
    assert missing == []


# --------------------------------------------------------------------------- the timing model


_SYMBOLS = {"Δ": "monitor_lag", "G": "write_delay", "P": "pause", "ε": "clock_drift",
            "R": "recheck_interval", "C": "cancel_latency", "T": "reassign_timeout",
            "N": "progress_timeout"}


def test_timing_defaults_tables_match_timing_model():
    defaults = {f.name: f.default for f in dataclasses.fields(TimingModel)}
    wrong = []
    for path in (ROOT / "README.md", ROOT / "docs" / "safety-model.md"):
        rows = re.findall(r"^\|.*?`(\w+)`.*\| ([0-9.]+) s \|$", _text(path), re.M)
        seen = {field for field, _ in rows if field in defaults}
        if path.name == "safety-model.md":
            assert seen == set(defaults), f"{_rel(path)} leaves out {set(defaults) - seen}"
        else:
            assert seen >= set(_SYMBOLS.values())
        wrong += [f"{_rel(path)}: {field} {value} s, code {defaults[field]:g} s"
                  for field, value in rows if field in defaults
                  and float(value) != defaults[field]]
    assert wrong == []


def test_lease_formula_as_documented_is_what_the_code_computes():
    t = TimingModel()
    eps, p, c = t.clock_drift, t.pause, t.cancel_latency
    big_t, big_n = t.reassign_timeout, t.progress_timeout
    # The code: each reassignment clock less its own margin; over N the drift is ε·N/T.
    assert t.lease_horizons() == pytest.approx(
        (big_t - (eps + p + c), big_n - (eps * big_n / big_t + p + c)))
    model = _text(ROOT / "docs" / "safety-model.md")
    section = model[model.index("### Lease margin and lease deadline"):]
    block = section[section.index("```") + 3:]
    block = block[:block.index("```")]
    assert "N/T" in block, "the progress arm's margin has its own drift term, ε·N/T"
    readme = _text(ROOT / "README.md")
    summary = readme[readme.index("In short:"):]
    summary = summary[summary.index("```") + 3:]
    summary = summary[:summary.index("```")]
    assert "N − ε·N/T" in summary or "N/T" in summary
    # The one-ping rule is the canary ProgressFromOnePing, not the shipped clock.
    assert "FIRST ping" not in summary


# --------------------------------------------------------------------------- metrics, codes


def test_every_metric_the_docs_name_exists():
    from verifier import GuardMetrics

    exposed = {re.sub(r"_total$", "", name) for name in GuardMetrics().catalogue()}
    named = {(where, m) for where, _, span in all_code_spans()
             for m in re.findall(r"\bverifier_[a-z_]+\b", span)}
    named |= {(_rel(p), m) for p in (ROOT / "dashboards").glob("*")
              for m in re.findall(r"\bverifier_[a-z_]+\b", p.read_text(encoding="utf-8"))}
    unknown = sorted(f"{where}: {m}" for where, m in named
                     if m != "verifier_chain"  # README: a misspelt setting in .env, not a metric
                     and re.sub(r"_(total|bucket|sum|count)$", "", m) not in exposed)
    assert unknown == []


#: Upper-case names in backticks that are placeholders, not codes.
PLACEHOLDERS = frozenset({"YOUR_COMMAND"})


def test_every_event_and_outcome_code_the_docs_name_is_in_the_code():
    source = source_text()
    words = set(re.findall(r"\b[A-Z][A-Z0-9_]+\b", source))
    settings = settings_by_variable()
    tier_events = re.search(r'f"TIER_\{TIER_EVENT\[tier\]\}_VERIFICATION"', source)
    missing = set()
    for where, number, span in all_code_spans():
        for code in re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", span):
            if code in settings or code in NOT_SETTINGS or code in PLACEHOLDERS:
                continue
            if re.fullmatch(r"TIER_[123]_VERIFICATION", code) and tier_events:
                continue
            if code not in words:
                missing.add(f"{where}:{number}: {code}")
    assert sorted(missing) == []


# --------------------------------------------------------------------------- code names


@cache
def _modules() -> dict[str, object]:
    found: dict[str, object] = {}
    for name in ("verifier", "sim", "conformance"):
        package = importlib.import_module(name)
        found[name] = package
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            leaf = info.name.rpartition(".")[2]
            if leaf == "conftest" or leaf.startswith("test_"):
                continue
            found[info.name] = importlib.import_module(info.name)
    return found


def _has(cls: type, attr: str) -> bool:
    if hasattr(cls, attr) or attr in getattr(cls, "__annotations__", {}):
        return True
    if dataclasses.is_dataclass(cls) and attr in {f.name for f in dataclasses.fields(cls)}:
        return True
    with contextlib.suppress(OSError, TypeError):
        return re.search(rf"self\.{re.escape(attr)}\b\s*[:=]", inspect.getsource(cls)) is not None
    return False


def test_every_dotted_code_name_the_docs_use_exists():
    """`verifier.PollSchedule`, `sim.l1_bound`, `TimingModel.proof_delay`, `World.last_fault`:
    a module path resolves attribute by attribute, a ``Class.member`` against every class of
    that name in the three packages."""
    modules = _modules()
    classes: dict[str, list[type]] = {}
    for module in modules.values():
        for obj in vars(module).values():
            if inspect.isclass(obj) and obj.__module__.split(".")[0] in modules:
                classes.setdefault(obj.__name__, []).append(obj)
    wrong = []
    for where, number, span in all_code_spans():
        name = re.sub(r"\(.*\)$", "", span.strip())
        if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", name):
            continue
        parts = name.split(".")
        if parts[0] in ("verifier", "sim", "conformance"):
            i = max(i for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in modules
                    or i == 1)
            obj: object = modules.get(".".join(parts[:i]))
            for part in parts[i:]:
                if obj is None:
                    break
                if hasattr(obj, part):
                    obj = getattr(obj, part)
                elif inspect.isclass(obj) and _has(obj, part):
                    obj = None  # an instance attribute: found, nothing further to walk
                else:
                    wrong.append(f"{where}:{number}: {name}")
                    break
        elif parts[0] in classes and not any(_has(c, parts[1]) for c in classes[parts[0]]):
            wrong.append(f"{where}:{number}: {name}")
    assert wrong == []


def test_every_test_name_the_docs_cite_exists():
    tests = set()
    for path in [*(ROOT / "tests").rglob("test_*.py"), *(ROOT / "conformance").glob("test_*.py")]:
        tests |= set(re.findall(r"^\s*(?:async )?def (test_\w+)", _text(path), re.M))
    cited = {(where, span) for where, _, span in all_code_spans()
             if re.fullmatch(r"test_\w+", span) and not span.endswith("_py")}
    assert sorted(f"{w}: {s}" for w, s in cited if s not in tests) == []


# --------------------------------------------------------------------------- figures


def _mean(cell: str) -> float:
    return float(cell.split("[")[0].split("(")[0].replace(",", "").strip() or "nan")


def test_ablation_doc_is_the_readme_table_divided_by_ten():
    """docs/ablation.md says its table is the README's research ablation per 100 jobs."""
    doc = _text(ROOT / "docs" / "ablation.md")
    if "divided by 10" not in doc:
        pytest.skip("docs/ablation.md no longer claims to be the README's table")
    readme = _text(ROOT / "README.md")
    block = readme[readme.index("Ablation, scenario ablation"):]
    block = block[:block.index("\n\n")]
    header, *rows = [r for r in block.split("\n")[1:] if r and not r.startswith("-")]
    columns = [c.strip() for c in re.split(r"\s{2,}", header.strip())]
    twice, lost, s3 = (columns.index(c) for c in (
        "twice at once/1k [95% CI]", "lost/stuck/1k [95% CI]", "S3/1k [95% CI]"))
    per_1000 = {}
    for row in rows:
        cells = re.split(r"\s{2,}", row.strip())
        per_1000[cells[0].replace("hardened-without-", "without ")] = (
            _mean(cells[twice]), _mean(cells[s3]), _mean(cells[lost]))
    wrong = []
    for line in doc.split("\n"):
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not line.startswith("| ") or cells[0] not in per_1000:
            continue
        s2, s3_doc, l1 = (_mean(cells[i]) if cells[i] not in ("0", "-") else 0.0
                          for i in (1, 3, 4))
        expected = tuple(v / 10 for v in per_1000[cells[0]])
        if (s2, s3_doc, l1) != pytest.approx(expected, abs=0.006):
            wrong.append(f"{cells[0]}: doc {(s2, s3_doc, l1)}, README / 10 {expected}")
    assert wrong == []


def test_settle_is_counted_from_the_claims_answer_everywhere():
    """The settle wait starts at the claim's answer (``OwnershipProtocol``: ``claim_answered +
    settle_delay``); counted from the send or the decision it is finding 1's flaw."""
    protocol = (ROOT / "verifier" / "protocol.py").read_text(encoding="utf-8")
    assert "claim_answered + p.timing.settle_delay(" in protocol
    wrong = [f"{_rel(p)}: {m.group(0)}" for p in DOCS
             for m in re.finditer(r"claim[ _](sent|decided|decision) \+ settle_delay",
                                  _text(p))]
    assert wrong == []
