"""Session-wide pytest set-up: makes every Hypothesis search a function of its own test.

Hypothesis (6.13x and later) sometimes draws a literal constant found in the *local modules
imported so far* (``hypothesis.internal.conjecture.providers``: it rescans ``sys.modules``
whenever its length changes). Which of our modules are imported depends on which tests ran
earlier in the session (a CLI test imports ``sim._sweep``, a live test ``sim.live``), so a
derandomized search drew different examples alone than in the full run: measured, the
outside-the-model count of ``conformance/test_races.py`` was 14/400 alone and 12/400 after
``import sim._sweep``, and a stateful teeth search shrank to 8 steps alone and to 10 or 15 in
CI. Importing every module of our packages before the first test makes that constant pool the
same in every session, whatever the selection or order of tests.
"""

from __future__ import annotations

import importlib
import pkgutil

#: The packages whose constants Hypothesis may draw (tests are excluded by Hypothesis itself).
_PACKAGES = ("verifier", "sim", "conformance")


def _import_every_module() -> None:
    for name in _PACKAGES:
        package = importlib.import_module(name)
        for module in pkgutil.walk_packages(package.__path__, prefix=f"{name}."):
            leaf = module.name.rpartition(".")[2]
            # __main__ runs a command on import; tests and conftests are pytest's to import.
            if leaf == "__main__" or leaf == "conftest" or leaf.startswith("test_"):
                continue
            importlib.import_module(module.name)


def pytest_configure() -> None:
    _import_every_module()
