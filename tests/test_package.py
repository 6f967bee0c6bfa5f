"""The package's public surface: every exported name resolves, and loading the extension stays cheap."""

from __future__ import annotations

import subprocess
import sys

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
