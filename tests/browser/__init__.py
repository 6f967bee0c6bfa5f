"""Real-browser tests: JupyterLab in headless Chromium (Playwright), showing the %openhands panel."""
