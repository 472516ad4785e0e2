"""Packaging: pip and conda users get the same dependencies, the book tool stays on 1.x."""

from __future__ import annotations

import importlib
import tomllib
from importlib import metadata
from pathlib import Path

import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _pyproject_requirements() -> dict[str, Requirement]:
    """dependencies + every extra, without the project's references to its own extras."""
    lines = [*PROJECT["dependencies"], *sum(PROJECT["optional-dependencies"].values(), [])]
    requirements = [Requirement(line) for line in lines]
    return {r.name.lower(): r for r in requirements if r.name.lower() != PROJECT["name"]}


def _environment_pip() -> list[str]:
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict)]
    assert len(pip_sections) == 1, "environment.yml needs exactly one pip: section"
    return pip_sections[0]


def test_environment_yml_lists_the_pyproject_requirements():
    pip_lines = [line for line in _environment_pip() if not line.startswith("-")]
    environment = {Requirement(line).name.lower(): Requirement(line) for line in pip_lines}
    pyproject = _pyproject_requirements()
    assert len(environment) == len(pip_lines), "a requirement is listed twice in environment.yml"
    assert sorted(environment) == sorted(pyproject)
    for name, requirement in pyproject.items():
        assert environment[name].specifier == requirement.specifier, name
        assert environment[name].extras == requirement.extras, name


def test_environment_yml_installs_the_project_once():
    editable = [line for line in _environment_pip() if line.startswith("-")]
    assert editable == ["-e ."]
    names = [Requirement(line).name.lower() for line in _environment_pip()
             if not line.startswith("-")]
    assert PROJECT["name"] not in names


def test_conda_python_is_supported_by_the_project():
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    python = next(d for d in environment["dependencies"]
                  if isinstance(d, str) and d.startswith("python="))
    version = python.split("=", 1)[1]
    assert Requirement(f"python>={version}").specifier.contains(version)
    assert Requirement(f"x{PROJECT['requires-python']}").specifier.contains(version)


def test_jupyter_book_is_pinned_to_1x():
    requirement = _pyproject_requirements()["jupyter-book"]
    assert requirement.specifier.contains("1.0.4")
    assert not requirement.specifier.contains("2.0.0")
    assert not requirement.specifier.contains("1.0.3")


def test_console_script_points_at_the_cli():
    assert PROJECT["scripts"]["waldorf"] == "waldorf_cli:main"
    module, function = PROJECT["scripts"]["waldorf"].split(":")
    assert callable(getattr(importlib.import_module(module), function))
    installed = {e.name: e.value for e in metadata.entry_points(group="console_scripts")}
    assert installed.get("waldorf") == "waldorf_cli:main", "reinstall: pip install -e '.[dev]'"


def test_every_shell_script_parses_and_the_release_script_refuses_without_its_folders(tmp_path):
    import os
    import subprocess

    scripts = sorted((REPO / "scripts").glob("*.sh")) + [REPO / ".ci" / "run"]
    for script in scripts:
        done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert done.returncode == 0, f"{script}: {done.stderr}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALDORF_")}
    done = subprocess.run(["bash", str(REPO / "scripts" / "release.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode != 0 and "WALDORF_ARTIFACTS" in done.stderr
