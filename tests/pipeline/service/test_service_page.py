"""The admin page in real headless Chromium (Debian's chromium + chromium-driver, driven by
selenium through /usr/bin/chromedriver; never a downloaded browser): enter the token, start a
sync, watch the progress bar reach 100% over SSE, and the chart draw. Screenshots are kept in
the test's temp dir. Without the browser the test skips locally and fails under CI."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_helpers import TOKEN, Server, make_universe
from tests_helpers import in_ci

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,1400",
)


@pytest.fixture
def browser():
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        msg = f"browser test needs Debian's chromium and chromium-driver ({', '.join(missing)} missing)"
        if in_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_token_start_progress_to_100_and_chart(tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    home = tmp_path / "home"
    make_universe(home, ["AAA", "BBB", "BRK.B", "CCC"])
    (tmp_path / "marketlake.toml").write_text("[sync]\nbatch_tasks = 1\nconcurrency = 1\n")
    srv = Server(home, tmp_path)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        wait = WebDriverWait(browser, 45)
        browser.get(srv.base + "/")
        wait.until(ec.text_to_be_present_in_element((By.ID, "health"), "degraded"))
        assert browser.find_element(By.ID, "token-form").is_displayed()
        browser.find_element(By.ID, "token").send_keys(TOKEN)
        browser.find_element(By.ID, "token-save").click()
        assert TOKEN not in browser.current_url
        wait.until(lambda d: not d.find_element(By.ID, "token-form").is_displayed())
        browser.save_screenshot(str(shots / "1-token.png"))

        browser.find_element(By.ID, "start").click()
        bar = browser.find_element(By.ID, "progress-bar")
        wait.until(lambda d: bar.get_attribute("data-percent") == "100.0")
        wait.until(ec.text_to_be_present_in_element((By.ID, "run-info"), ": ok"))
        tasks = browser.find_elements(By.CSS_SELECTOR, "#tasks li")
        assert len(tasks) == 4, [t.text for t in tasks]
        assert "done" in bar.get_attribute("class")
        browser.save_screenshot(str(shots / "2-synced.png"))

        # the finished run refreshes the instruments: the chart of the first symbol draws
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart-symbol option"))
        browser.find_element(By.ID, "draw").click()
        wait.until(ec.text_to_be_present_in_element((By.ID, "chart-status"), "drawn"))
        status = browser.find_element(By.ID, "chart-status")
        assert int(status.get_attribute("data-bars")) > 100
        assert browser.find_elements(By.CSS_SELECTOR, "#chart canvas")
        assert browser.find_elements(By.CSS_SELECTOR, "#chart-rsi canvas")  # RSI pane
        rows = browser.find_elements(By.CSS_SELECTOR, "#segments tbody tr")
        assert rows and rows[0].text.split()[:4] == ["equity", "1D", "ohlcv", "4"]
        logs = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#logs tbody tr")]
        assert any("run:sync" in line and "success" in line for line in logs), logs
        browser.save_screenshot(str(shots / "3-chart.png"))
        errors = [
            e for e in browser.get_log("browser") if e["level"] == "SEVERE"
        ]  # CSP violations and script errors land here
        assert errors == [], "\n".join(e["message"][:300] for e in errors)
    finally:
        srv.stop()
    assert TOKEN not in srv.output()  # the token reached no log
    for name in ("1-token.png", "2-synced.png", "3-chart.png"):
        assert (shots / name).stat().st_size > 1000
