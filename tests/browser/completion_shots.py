"""Pictures of tab completion in JupyterLab: ``--model`` values from the server's list, and the magic's options.

    .venv/bin/python tests/browser/completion_shots.py OUT_DIR

Against the local server (its model list); saves ``completion-model.png`` and ``completion-options.png``.
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, so `tests.browser` imports

from tests.browser.harness import JupyterLab, NotebookPage, launch_chromium  # noqa: E402

from openhands_magics.testing import LocalOpenHandsServer, Timeline  # noqa: E402

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
with LocalOpenHandsServer("sk-shots", timeline=Timeline(starting=0.2, running=0.5)) as server:
    env = server.environ()
    with JupyterLab(Path(tempfile.mkdtemp()), environ=env) as lab, launch_chromium() as browser:
        cells = [
            "%load_ext openhands_magics",
            "%openhands --no-panel --repo octo/demo hello",
            "from openhands_magics import suggestions\nlen(suggestions.suggest('model', patience=10))",
            "%openhands --model ",
            "",
        ]
        lab.write_notebook("completion.ipynb", cells)
        page = browser.new_page()
        nb = NotebookPage(page, lab, "completion.ipynb").open(len(cells))
        nb.run_cell(0)
        nb.run_cell(1)
        nb.run_cell(2)  # (the list is cached: the Tab below answers from it, as any Tab after the first does)
        # (Tab completes only after a character: after "--model " it would indent)
        for shot, text in (("completion-model.png", "a"), ("completion-options.png", "%openhands --ma")):
            index = 3 if text == "a" else 4
            editor = nb.cell(index).locator(".jp-InputArea-editor")
            editor.click()
            page.keyboard.press("End")
            page.keyboard.type(text)
            page.keyboard.press("Tab")
            page.locator(".jp-Completer").first.wait_for(state="visible", timeout=15000)
            page.wait_for_timeout(500)
            box = nb.cell(index).bounding_box()
            assert box is not None
            page.screenshot(
                path=out / shot, clip={"x": 0, "y": box["y"] - 10, "width": 900, "height": min(380, 800 - box["y"])}
            )
            page.keyboard.press("Escape")
