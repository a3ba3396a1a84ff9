#!/usr/bin/python3
"""CTest entry point for the report tests (reports/CMakeLists.txt).

Fails (never skips) with the Debian package to install when matplotlib or pytest is missing:
scripts/setup-deps.sh installs both, so a missing one is a broken setup, not an optional feature.
"""
import importlib.util
import sys
from pathlib import Path

NEEDED = (("matplotlib", "python3-matplotlib"), ("pytest", "python3-pytest"))

missing = [(mod, pkg) for mod, pkg in NEEDED if importlib.util.find_spec(mod) is None]
if missing:
    mods = ", ".join(mod for mod, _ in missing)
    missing = [pkg for _, pkg in missing]
    print(f"reports tests: {sys.executable} cannot import {mods}: Debian package(s) "
          f"{', '.join(missing)} missing. Install with\n"
          f"  apt-get install -y --no-install-recommends {' '.join(missing)}\n"
          "or run scripts/setup-deps.sh, which installs them.", file=sys.stderr)
    sys.exit(1)

import pytest  # noqa: E402  (only once we know it is there)

# No .pytest_cache in the source tree.
TESTS = Path(__file__).resolve().parent / "tests"
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", str(TESTS)]))
