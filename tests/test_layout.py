"""The shape of the codebase, pinned: public surfaces, private modules, and the README's layout.

The import-linter contract in ``pyproject.toml`` (run by ``.ci/run``) checks the layers and the
absence of import circles on the import graph; these tests check what a graph cannot see: that
white-box tests take nothing private that is also public, that the names other packages use are
exported, and that the README maps every module a newcomer will open.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import sim
import sim.live
import verifier
import verifier.protocol

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("verifier", "sim", "conformance", "benchmarks", "tests")


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _imports_from(path: Path) -> list[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
    return found


def test_nothing_outside_verifier_imports_its_private_modules():
    """Outside ``verifier/``, only its white-box unit tests may open a private module, and only
    for a name the public surface does not offer (a constant, an internal parser)."""
    public = {id(getattr(module, name)) for module in (verifier, verifier.protocol)
              for name in module.__all__}
    offenders = []
    for path in _python_files("sim", "conformance", "benchmarks", "tests"):
        white_box = path.is_relative_to(ROOT / "tests" / "verifier")
        for module, names in _imports_from(path):
            if not module.startswith("verifier._"):
                continue
            if not white_box:
                offenders.append(f"{path.relative_to(ROOT)}: {module}")
            private = importlib.import_module(module)
            offenders.extend(f"{path.relative_to(ROOT)}: {module}.{name} is public: import it "
                             "from verifier" for name in names
                             if id(getattr(private, name)) in public
                             and not isinstance(getattr(private, name), (int, str, float)))
    assert offenders == []


def test_sim_private_modules_are_used_only_by_sim_and_its_tests():
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in _python_files("conformance", "benchmarks")
        for module, _ in _imports_from(path)
        if re.match(r"sim(\.live)?\._", module)
    ]
    assert offenders == []


def test_protocol_module_exports_every_step_type():
    """Drivers (the guard, the SimPy encoder, a user's ``--protocol``) speak in these types."""
    for name in ("Observe", "Claim", "Heartbeat", "Finish", "Release", "StartWork", "CancelWork",
                 "Sleep", "Done", "Observed", "TierFailed", "WriteAnswered", "WorkStarted",
                 "WorkStopped", "Woke", "WorkEnded", "PhaseChanged", "OwnershipProtocol",
                 "Outcome", "OutcomeKind", "Step"):
        assert name in verifier.protocol.__all__, name
        assert getattr(verifier.protocol, name).__module__ == "verifier.protocol"


def test_sim_exports_what_other_packages_use():
    used: set[str] = set()
    for path in _python_files("conformance", "benchmarks"):
        for module, names in _imports_from(path):
            if module in ("sim", "sim.live"):
                used.update(names)
    exported = set(sim.__all__) | set(sim.live.__all__)
    assert used <= exported
    for name in sim.__all__:
        assert getattr(sim, name) is not None
    for name in sim.live.__all__:  # lazily loaded: each name must resolve
        assert getattr(sim.live, name) is not None


def test_readme_layout_lists_every_module():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):]
    missing = []
    for package in ("verifier", "sim", "conformance", "benchmarks"):
        for path in _python_files(package):
            if path.name in ("__init__.py", "__main__.py", "conftest.py"):
                continue
            if path.name not in layout:
                missing.append(str(path.relative_to(ROOT)))
    assert missing == []


def test_sim_init_maps_every_module():
    doc = sim.__doc__ or ""
    missing = [p.name for p in _python_files("sim")
               if p.name not in ("__init__.py", "__main__.py") and p.name not in doc]
    assert missing == []
