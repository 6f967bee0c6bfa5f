"""Take pictures of the %openhands panel in a real JupyterLab, for a person who wants to look at it.

    .venv/bin/python tests/browser/screenshot.py --out /tmp/panel-shots [--dark]

Does what tests/browser/test_panel.py does, outside pytest: starts a local OpenHands server and JupyterLab on
127.0.0.1, opens a notebook in headless Chromium, runs ``%load_ext openhands_magics`` and ``%openhands say hello``
through the UI, then another cell, and saves, in --out:

  panel-THEME-output-first.png  the panel's output area when the card first shows
  panel-THEME-output.png        the same area after the status changed
  panel-THEME-page.png          the whole JupyterLab page then

where THEME is ``light`` or, with --dark, ``dark`` (JupyterLab Dark, set in the user settings of that JupyterLab).
Needs Debian's chromium (or OPENHANDS_TEST_CHROMIUM) and ``pip install jupyterlab playwright`` in this Python.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, so `tests.browser` imports

from tests.browser.harness import (  # noqa: E402
    ConsoleLog,
    JupyterLab,
    launch_chromium,
    missing_requirements,
    run_panel_notebook,
    start_openhands_server,
)

API_KEY = "oh-screenshot-local-only"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs (created if missing)")
    parser.add_argument("--dark", action="store_true", help="use JupyterLab's dark theme")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds a conversation starts, then runs")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args(argv)

    missing = missing_requirements()
    if missing:
        print("cannot take screenshots: " + "; ".join(missing), file=sys.stderr)
        return 2
    theme = "dark" if args.dark else "light"
    server = start_openhands_server(API_KEY, args.seconds)
    try:
        with (
            JupyterLab(environ=server.environ(), dark=args.dark) as lab,
            launch_chromium(dark=args.dark, viewport=(args.width, args.height)) as browser,
        ):
            page = browser.new_page()
            console = ConsoleLog().attach(page)
            try:
                seen = run_panel_notebook(page, lab, args.out, prefix=f"panel-{theme}")
            except Exception:
                failed = args.out / f"FAILED-panel-{theme}.png"
                page.screenshot(path=failed)
                print(f"failed; the page as it was: {failed}\nconsole:\n{console.text()}\n"
                      f"JupyterLab log (tail):\n{lab.log_tail()}", file=sys.stderr)  # fmt: skip
                raise
    finally:
        server.stop()
    print(f"status {seen.first_status!r} -> {seen.later_status!r} after {seen.seconds_to_change:.1f}s; "
          f"link {seen.href} target={seen.target}; drawn by the widget: {seen.rendered_by_widget}")  # fmt: skip
    for path in seen.screenshots.values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
