"""Browser tests: Playwright drives Debian's Chromium against pytest-django's live server.

Run with the rest of the suite. Without a Chromium on the machine they are skipped
(except under CI=true, where that is an error); a screenshot of each failing test is
kept under test-results/.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, ConsoleMessage, Error, Page
from pytest_django.live_server_helper import LiveServer

# Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
# between browser steps are synchronous and safe here.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PASSWORD = "correct-horse-battery-staple"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            if CHROMIUM is None and os.environ.get("CI") != "true":
                item.add_marker(pytest.mark.skip(reason="no chromium on this machine"))


@pytest.fixture(scope="session")
def base_url() -> None:
    """No base URL for the browser contexts: each test goes to the live server's own.
    (pytest-playwright's fallback fixture of this name is a method, which pytest 9
    deprecates with a warning.)"""
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    if CHROMIUM is None:
        pytest.fail("CI=true but chromium is not installed (apt-get install -y chromium)")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


class BrowserProblems(list[str]):
    """Console errors, CSP violations and uncaught exceptions seen by one page."""

    def watch(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", self._page_error)

    def _console(self, message: ConsoleMessage) -> None:
        # Chromium reports a CSP violation as a console error ("Refused to … because it
        # violates the following Content Security Policy directive …").
        if message.type == "error" or "Content Security Policy" in message.text:
            self.append(f"console {message.type} at {message.location.get('url')}: {message.text}")

    def _page_error(self, error: Error) -> None:
        self.append(f"uncaught exception: {error.name}: {error.message}")


@pytest.fixture
def browser_problems(page: Page) -> Iterator[BrowserProblems]:
    """What went wrong in the page's scripts; every test using it must end with none."""
    problems = BrowserProblems()
    problems.watch(page)
    yield problems
    assert list(problems) == [], "the browser reported problems:\n" + "\n".join(problems)


@pytest.fixture
def operator(django_user_model):  # type: ignore[no-untyped-def]
    return django_user_model.objects.create_user("operator", password=PASSWORD, is_staff=True)


def log_in(page: Page, base_url: str, username: str = "operator") -> None:
    """Log in through the login form, as a person would; land on the overview."""
    page.goto(f"{base_url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base_url}/")


@pytest.fixture
def logged_in(
    page: Page, live_server: LiveServer, operator: Any, browser_problems: BrowserProblems
) -> Iterator[Page]:
    """A page logged in as a staff operator, on the overview; its scripts must not fail."""
    log_in(page, live_server.url)
    yield page


@pytest.fixture
def no_js_page(browser: Browser, live_server: LiveServer, operator: Any) -> Iterator[Page]:
    """A page logged in as the staff operator, in a browser context with JavaScript
    turned off: what a page does without htmx."""
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    log_in(page, live_server.url)
    yield page
    context.close()


@pytest.fixture
def viewer_page(browser: Browser, live_server: LiveServer) -> Iterator[Page]:
    """A page logged in as a user without staff rights, in a browser context of its own."""
    User.objects.create_user("viewer", password=PASSWORD)
    context = browser.new_context()
    page = context.new_page()
    log_in(page, live_server.url, username="viewer")
    yield page
    context.close()
