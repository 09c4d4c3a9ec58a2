"""A headless Chromium for the browser tests (the HTML report, the documentation site)."""

from __future__ import annotations

import shutil

import pytest


def headless_chromium():
    """A headless Chromium driven through chromedriver (Debian's chromium + chromium-driver,
    installed by `make test` and `make docs`), or a skip that says what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[dev]')")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (binary and driver_path):
        pytest.skip("chromium/chromedriver not installed (`make browser` installs them as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--window-size=1280,900",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(options=options, service=Service(driver_path))
    except Exception as error:  # noqa: BLE001 - any start-up failure is a reason to skip
        pytest.skip(f"headless chromium did not start: {str(error).splitlines()[0]}")
