"""The package's public surface: every exported name resolves, and loading the extension stays cheap; and its metadata
is ready to publish (the Pythons it names are the ones CI tests, PEP 639 licence fields, URLs, a changelog entry)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import openhands_magics


def test_all_lists_exactly_the_eager_and_the_lazy_exports() -> None:
    eager = {"__version__", "load_ipython_extension", "unload_ipython_extension"}
    assert set(openhands_magics.__all__) == eager | set(openhands_magics._LAZY)
    assert len(openhands_magics.__all__) == len(set(openhands_magics.__all__))


def test_every_exported_name_resolves() -> None:
    for name in openhands_magics.__all__:
        assert getattr(openhands_magics, name) is not None, name


def test_load_ext_imports_neither_httpx_nor_ipywidgets() -> None:
    code = (
        "import sys\n"
        "from IPython.testing.globalipapp import start_ipython\n"
        "start_ipython().run_line_magic('load_ext', 'openhands_magics')\n"
        "print(sorted(m for m in ('httpx', 'ipywidgets') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


# ------------------------------------------------------------------------------------------------- ready to publish

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # Python 3.10: pytest's own dependency reads TOML there
        import tomli as tomllib  # type: ignore[no-redef]
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _ci_commands() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- ci:commands", 1)[1].split("<!-- /ci:commands -->", 1)[0]
    return block


def test_the_classifiers_name_every_python_from_the_lowest_supported_to_the_highest_ci_tests() -> None:
    project = _pyproject()["project"]
    lowest = re.fullmatch(r">=3\.(\d+)", project["requires-python"])
    assert lowest, project["requires-python"]
    tested = sorted({int(minor) for minor in re.findall(r"\bpython3\.(\d+) -m venv", _ci_commands())})
    assert tested and tested[0] == int(lowest[1]), f"CI's venvs use 3.{tested}, the package supports >=3.{lowest[1]}"
    named = sorted(
        int(c.rsplit(".", 1)[1])
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    assert named == list(range(tested[0], tested[-1] + 1)), (named, tested)


def test_the_license_is_an_spdx_expression_with_its_file_and_no_license_classifier() -> None:
    project = _pyproject()["project"]
    assert project["license"] == "MIT"
    assert all((ROOT / name).is_file() for name in project["license-files"])
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]


def test_every_project_url_is_https_and_the_changelog_has_this_version() -> None:
    urls = _pyproject()["project"]["urls"]
    assert {"Homepage", "Repository", "Issues", "Changelog"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{openhands_magics.__version__}]" in changelog
    assert "## [Unreleased]" in changelog
