"""The README's set-up commands are what CI runs, they work in a virtualenv, and the
test extra declares every package the tests import (a missing one passed CI once because
CI installed into a Python that happened to have it)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib import metadata

import pytest

from tests.helpers import ROOT

MARKER = "<!-- setup-commands"


def readme_commands() -> list[str]:
    """The commands of the README's marked shell block (no blanks, no comments)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert MARKER in text, "the README lost its <!-- setup-commands --> marker (.ci/run reads it)"
    block = re.search(r"^```\w*\n(.*?)^```", text[text.index(MARKER):], re.S | re.M)
    assert block, "no code block after the README's setup-commands marker"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_the_readme_gives_two_commands_each_in_a_virtualenv():
    demo, tests = readme_commands()

    for command in (demo, tests):
        assert command.startswith("python3 -m venv .venv && . .venv/bin/activate && "), command
    assert demo.endswith("pip install . && syncctl demo")
    assert "pip install -e '.[test]'" in tests and tests.endswith("python -m pytest")


def test_ci_runs_exactly_the_readmes_commands():
    printed = subprocess.run(["bash", str(ROOT / ".ci" / "run"), "--commands"], capture_output=True, text=True,
                             timeout=60, check=True)  # fmt: skip

    assert printed.stdout.splitlines() == readme_commands()
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "pip install" not in script and "pytest " not in script.replace("pytest exit", "")  # nothing restated


def _declared() -> set[str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        pytest.skip("tomllib needs Python 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["test"]
    return {_normal(re.match(r"[A-Za-z0-9._-]+", requirement).group()) for requirement in requirements}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_test_extra_declares_every_package_the_tests_import():
    imported: set[str] = set()
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names and name not in ("syncctl", "tests")}
    distributions = metadata.packages_distributions()

    declared = _declared()

    undeclared = {  # a module not installed here is taken to come from the distribution of its name
        name for name in third_party if not {_normal(d) for d in distributions.get(name, [name])} & declared
    }

    assert undeclared == set(), "imported by tests/ but not in pyproject.toml's test extra"
