"""A real browser (Chromium through selenium) for the admin-layout tests.

The tests need Chromium and its chromedriver (Debian: ``apt install chromium chromium-driver``)
and the ``selenium`` package; without them they are skipped with a reason saying what is
missing. ``GATEWAY_TEST_CHROMIUM`` and ``GATEWAY_TEST_CHROMEDRIVER`` point at other binaries.
Screenshots go to ``test-artifacts/admin-screenshots/`` (``GATEWAY_TEST_SCREENSHOTS`` to change it).
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

#: Width of the window every admin page must fit: a laptop, or a desktop browser not maximised.
WINDOW = (1280, 900)
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(
    os.environ.get("GATEWAY_TEST_SCREENSHOTS", ROOT / "test-artifacts" / "admin-screenshots")
)


def _binary(variable: str, *names: str) -> str | None:
    explicit = os.environ.get(variable)
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return next((found for name in names if (found := shutil.which(name))), None)


def _missing() -> tuple[str | None, str | None, str]:
    """The browser, its driver, and what is missing (empty when nothing is)."""
    browser = _binary("GATEWAY_TEST_CHROMIUM", "chromium", "chromium-browser", "google-chrome")
    driver = _binary("GATEWAY_TEST_CHROMEDRIVER", "chromedriver")
    missing = []
    if browser is None:
        missing.append("Chromium (apt install chromium, or set GATEWAY_TEST_CHROMIUM)")
    if driver is None:
        missing.append(
            "chromedriver (apt install chromium-driver, or set GATEWAY_TEST_CHROMEDRIVER)"
        )
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install selenium)")
    return browser, driver, "; ".join(missing)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session, with a window 1280 px wide."""
    chromium, chromedriver, missing = _missing()
    if missing:
        if os.environ.get("GATEWAY_TEST_REQUIRE_SERVICES") == "1":  # CI: .ci/run installs them
            pytest.fail(f"the admin browser tests need {missing}")
        pytest.skip(f"the admin browser tests need {missing}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",  # containers and CI runners often lack the namespaces the sandbox needs
        "--disable-dev-shm-usage",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--force-device-scale-factor=1",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def admin_browser(browser: Any, live_server: Any, django_user_model: Any) -> Any:
    """The browser, logged in to the live server's admin as a superuser."""
    from django.test import Client

    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(user)
    browser.get(f"{live_server.url}/admin/login/")
    browser.delete_all_cookies()
    browser.add_cookie(
        {"name": settings.SESSION_COOKIE_NAME, "value": client.cookies["sessionid"].value}
    )
    browser.base_url = live_server.url
    return browser


def open_page(driver: Any, url: str, wait_for: str = "") -> None:
    """Open ``url`` of the live server; with ``wait_for``, reload until the page shows it."""
    deadline = time.monotonic() + 5
    driver.get(f"{driver.base_url}{url}")
    while wait_for and wait_for not in driver.page_source and time.monotonic() < deadline:
        time.sleep(0.2)
        driver.refresh()
    assert "login" not in driver.current_url, "not logged in"
    assert "Server Error" not in driver.title and "Page not found" not in driver.title
    assert wait_for in driver.page_source


def screenshot(driver: Any, name: str) -> Path:
    """The whole page, as wide as its content, so what lies off screen shows too."""
    width, height = driver.execute_script(
        "window.scrollTo(0, 0);"  # the sidebar is drawn where the window was scrolled to
        "const d = document.documentElement;"
        "return [Math.max(d.scrollWidth, d.clientWidth), Math.max(d.scrollHeight, d.clientHeight)];"
    )
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        },
    )
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
