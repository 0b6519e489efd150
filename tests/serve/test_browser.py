"""The page in a real browser (Debian's headless Chromium via selenium): upload, type labels, recognise, compare
the top-1 with `vificlip predict --json`; search and "more like these"; no JavaScript errors in the console.

This test fails (never skips) without /usr/bin/chromium and /usr/bin/chromedriver: CI installs them (.ci/run).
Set VIFICLIP_SCREENSHOT=path.png to keep the screenshot (docs/serve.png is made this way).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import CLASSES
from test_api import predict_cli

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TIMEOUT = 60


@pytest.fixture
def browser(tmp_path):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: the browser test needs Debian's Chromium; install it with "
                    "`sudo apt-get install chromium chromium-driver` (.ci/run does this)")  # fmt: skip
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                     "--window-size=1280,860", f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=ChromeService(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_recognises_and_searches(browser, server, world, tmp_path, capsys) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, TIMEOUT)
    find = browser.find_element
    browser.get(server + "/")
    wait.until(lambda d: "synthetic-tiny-clip" in find(By.ID, "status").text)

    video = world["videos"] / "yellow_triangle" / "clip0.mp4"
    find(By.ID, "video-file").send_keys(str(video))
    find(By.ID, "classes").send_keys(", ".join(CLASSES))
    find(By.ID, "submit-predict").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#predictions li .class-name"))
    top1 = find(By.CSS_SELECTOR, "#predictions li .class-name").text
    assert top1 == predict_cli(video, capsys)["top_k"][0]["class"] == "yellow triangle"
    assert find(By.ID, "video-name").text == "clip0.mp4"
    wait.until(lambda d: find(By.ID, "overlay-img").get_attribute("src").startswith("data:image/png"))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#filmstrip img")) == 8
    assert "ms" in find(By.ID, "timings").text
    screenshot = tmp_path / "serve.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    if os.environ.get("VIFICLIP_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["VIFICLIP_SCREENSHOT"])

    find(By.ID, "tab-search").click()
    find(By.ID, "query").send_keys("green star")
    find(By.ID, "submit-search").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#results .result"))
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .result")
    assert len(cards) >= 1
    assert cards[0].find_element(By.CLASS_NAME, "path").text.startswith("green_star/")
    wait.until(lambda d: d.execute_script("const i = document.querySelector('#results img');"
                                          "return i.complete && i.naturalWidth > 0"))  # fmt: skip
    first_id = cards[0].get_attribute("data-id")
    cards[0].click()
    find(By.ID, "more-like").click()
    wait.until(lambda d: "for “more like green_star/" in find(By.ID, "search-hint").text)
    ids = [c.get_attribute("data-id") for c in browser.find_elements(By.CSS_SELECTOR, "#results .result")]
    assert ids and first_id not in ids
    if os.environ.get("VIFICLIP_SCREENSHOT"):
        browser.save_screenshot(str(Path(os.environ["VIFICLIP_SCREENSHOT"]).with_name("serve_search.png")))

    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    assert find(By.ID, "error").get_attribute("hidden") is not None, find(By.ID, "error").text
