"""The HTML report opened in real headless Chromium (Debian's package), offline."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from keyrotation.compliance.render import to_html
from keyrotation.compliance.standing import assess
from keyrotation.inventory import read_organization
from tests.orgs import KeySpec, UserSpec

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MARKUP_NAME = '<img src=x onerror="document.title=1"><b>Payments & "Ops"</b>'

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="Debian's chromium and chromium-driver are not installed (.ci/run installs them)",
)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,1800",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def artifact(name: str, tmp_path: Path) -> Path:
    folder = Path(os.environ.get("KEYROTATION_ARTIFACTS", tmp_path / "artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def test_report_page_renders_every_key_sorts_filters_and_keeps_markup_as_text(
    org, browser, tmp_path
):
    from selenium.webdriver.common.by import By

    marked = org.account(
        [
            UserSpec("payments-api", (KeySpec(95), KeySpec(3))),
            UserSpec("ledger", (KeySpec(40),)),
            UserSpec("idle", (KeySpec(130, used_days_ago=None),)),
            UserSpec("break-glass", (KeySpec(400),), exempt=True),
        ],
        name=MARKUP_NAME,
    )
    plain = org.account(
        [UserSpec(f"app-{n:02d}", (KeySpec(age=(n * 13) % 100),)) for n in range(12)],
        name="Development",
    )
    settings = org.settings()
    inventory = read_organization(org.session, settings, [marked.account_id, plain.account_id])
    assessment = assess(inventory.users, settings.periods, org.now)
    page = tmp_path / "report.html"
    page.write_text(to_html(assessment, inventory.accounts, inventory.errors), encoding="utf-8")

    browser.get(page.as_uri())

    rows = browser.find_elements(By.CSS_SELECTOR, "#keys tbody tr")
    shown = {row.find_element(By.CSS_SELECTOR, "td.key").text for row in rows}
    expected = {k for a in (marked, plain) for keys in a.key_ids.values() for k in keys}
    assert shown == expected

    cells = browser.find_elements(By.CSS_SELECTOR, "#accounts tbody td:first-child")
    assert MARKUP_NAME in [cell.text for cell in cells]
    assert browser.find_elements(By.CSS_SELECTOR, "img, #accounts b, #keys b") == []
    assert browser.title.startswith("Access key compliance report")

    age_header = browser.find_element(By.XPATH, "//th[button[text()='age (days)']]/button")
    age_header.click()
    ascending = [int(c.text) for c in browser.find_elements(By.CSS_SELECTOR, "#keys td.age")]
    age_header.click()
    descending = [int(c.text) for c in browser.find_elements(By.CSS_SELECTOR, "#keys td.age")]
    assert ascending == sorted(ascending) and len(ascending) == len(expected)
    assert descending == sorted(ascending, reverse=True)

    browser.find_element(By.ID, "filter").send_keys("ledger")
    visible = [
        r for r in browser.find_elements(By.CSS_SELECTOR, "#keys tbody tr") if r.is_displayed()
    ]
    assert [r.find_element(By.CSS_SELECTOR, "td.user").text for r in visible] == ["ledger"]
    browser.find_element(By.ID, "filter").clear()
    browser.find_element(By.ID, "filter").send_keys(" ")

    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []

    screenshot = artifact("compliance-report.png", tmp_path)
    browser.save_screenshot(str(screenshot))
    shutil.copy(page, screenshot.with_suffix(".html"))
    print(f"screenshot of the report: {screenshot}")
