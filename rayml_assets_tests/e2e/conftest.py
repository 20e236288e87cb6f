"""The real browser the UI tests drive: Debian's chromium through Playwright."""

from pathlib import Path

import pytest

from rayml_assets_tests.support.dagster_stack import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
SHOTS = REPO / "test-artifacts" / "ui"
TIMEOUT_MS = 120_000  # pages of a loaded 2-core machine can take a while


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's browser with `apt-get install -y chromium chromium-driver` "
            "(make test does this); `playwright install` cannot download browsers here."
        )
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
