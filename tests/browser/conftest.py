"""Browser tests: Playwright's sync API driving Debian's chromium (``/usr/bin/chromium``, not
Playwright's own download) against pytest-django's ``live_server``.

Without chromium (or Playwright) the tests are skipped, unless ``CI`` is set: there a missing
browser is a failure, not a silent skip."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "screenshots"  # git-ignored


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives chromium against the live server (tests/browser)")


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture
def browser(live_server):
    """A chromium for one test, started after the test's database is set up and stopped before
    it is flushed (about a second).

    Why not one per module: Playwright's sync API leaves an asyncio loop running in the main
    thread, and while one runs, Django hands the thread other connection objects. The test's
    own set-up and flush must happen without it, on the connection that holds the serialized
    reference data (``serialized_rollback``); otherwise the data migrations' rows are lost after
    the first test. In between, Django's refusal of ORM calls next to a running loop is lifted
    (the test makes its GIVENs and checks with the ORM; the live server's thread keeps the
    check), and the connections opened meanwhile are closed before the loop stops."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed")
    from django.db import connections

    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
            connections.close_all()


@pytest.fixture
def new_context(browser, live_server):
    """``new_context()``: a fresh browser profile (cookies, session) per person, closed at the end."""
    contexts = []

    def make():
        context = browser.new_context(
            base_url=live_server.url, locale="en-US", accept_downloads=True, viewport={"width": 1280, "height": 900}
        )
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def no_trained_model(settings, tmp_path):
    """Scoring (run by the live server on submission) is rules-only: no model from ``var/``."""
    from fraud import model as fraud_model

    settings.FRAUD_MODEL_PATH = tmp_path / "fraud-model.pickle"
    fraud_model._cache.update(key=None, model=None)
    yield
    fraud_model._cache.update(key=None, model=None)


@pytest.fixture
def screenshot():
    """``screenshot(page, name)``: a full-page PNG in tests/screenshots/."""
    SCREENSHOTS.mkdir(exist_ok=True)

    def take(page, name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
