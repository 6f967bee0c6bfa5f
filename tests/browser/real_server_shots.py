"""Pictures of the live panel's feed mid-run and of the final card, in JupyterLab, against a real OpenHands server.

    .venv/bin/python tests/browser/real_server_shots.py OUT_DIR [BASE_URL]

BASE_URL defaults to http://127.0.0.1:3300, what ``../shared/real-openhands/up --llm-steps 3 --llm-delay 1`` serves
(its fake LLM makes the agent run three shell commands a second apart, then finish). Saves
``real-feed-midrun.png`` (the first time the feed shows a command), ``real-final.png`` and ``real-page.png``.
"""

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, so `tests.browser` imports

from tests.browser.harness import JupyterLab, NotebookPage, launch_chromium  # noqa: E402

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
base_url = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:3300"
env = {"OPENHANDS_BASE_URL": base_url, "OPENHANDS_API_KEY": "no-key-needed"}
with JupyterLab(Path(tempfile.mkdtemp()), environ=env) as lab, launch_chromium() as browser:
    lab.write_notebook("real.ipynb", ["%load_ext openhands_magics", "%openhands Run three steps and finish"])
    page = browser.new_page()
    nb = NotebookPage(page, lab, "real.ipynb").open(2)
    nb.run_cell(0)
    nb.run_cell(1)
    t0, shots = time.monotonic(), 0
    while time.monotonic() - t0 < 120:
        text = nb.output_text(1)
        if "$ echo step" in text and shots == 0:
            nb.output(1).screenshot(path=out / "real-feed-midrun.png")
            shots = 1
        if "FINISHED" in text and "steps" in text:
            time.sleep(1)
            nb.output(1).screenshot(path=out / "real-final.png")
            break
        time.sleep(0.3)
    page.screenshot(path=out / "real-page.png")
