"""The console in a real headless Chromium (Debian's package, driven by Selenium through chromedriver).

Screenshots of every page go to build/console-screenshots/ (not committed)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# the one set-up of Chromium and the one sign-in (it waits for the signed-in page), shared with the e2e/demo shots
from modelops_dev.e2e.console_shots import chromium, sign_in
from tests.cluster.console.conftest import Env
from tests.fixtures.console import REPO, ConsoleProc

pytestmark = pytest.mark.cluster
SHOTS = REPO / "build" / "console-screenshots"
INSTALL = "apt-get update && apt-get install -y chromium chromium-driver  (or scripts/bootstrap.sh)"


@pytest.fixture
def browser() -> Iterator[Any]:
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.fail(f"Chromium or chromedriver is not installed; run: {INSTALL}", pytrace=False)
    with chromium() as drv:
        yield drv


def shot(drv: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    # the whole page, not just the window
    for _ in range(2):  # the second pass sees images that loaded after the first resize
        height = drv.execute_script("return document.documentElement.scrollHeight")
        drv.set_window_size(1400, max(1000, min(int(height) + 150, 4000)))
    path = SHOTS / f"{name}.png"
    drv.save_screenshot(str(path))
    return path


def test_browser_overview_model_approval_and_refusal(seeded: Env, console: ConsoleProc, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    env, ns, drv = seeded, seeded.namespace, browser
    wait = WebDriverWait(drv, 20)
    drv.get(console.url + "/")
    assert "/login" in drv.current_url
    shot(drv, "00-login")
    sign_in(drv, console.url, env.users.bob)
    wait.until(ec.presence_of_element_located((By.ID, "deployments")))
    # overview: every object of the namespace, live-updated by the page's JavaScript
    rows = drv.find_elements(By.CSS_SELECTOR, f'#deployments tbody tr[data-key="{ns}/churn"]')
    assert len(rows) == 1 and "AwaitingApproval" in rows[0].text and "review v2" in rows[0].text
    assert drv.find_elements(By.CSS_SELECTOR, f'#schedules tbody tr[data-key="{ns}/churn-train"]')
    wait.until(lambda d: "(live)" in d.find_element(By.ID, "updated").text)
    assert drv.find_element(By.ID, "whoami").text == env.users.bob_name
    shot(drv, "01-overview")

    drv.find_element(By.LINK_TEXT, "churn").click()
    wait.until(ec.presence_of_element_located((By.ID, "versions")))
    assert "error-ratio" in drv.find_element(By.ID, "steps").text
    assert drv.find_elements(By.CSS_SELECTOR, "svg.plot polyline"), "drift per feature plotted"
    shot(drv, "02-model")

    # bob sees the evidence and the buttons, but the server refuses the decision (403)
    drv.get(f"{console.url}/approvals/modeldeployments/{ns}/churn/2")
    wait.until(ec.presence_of_element_located((By.ID, "metrics")))
    assert "test roc_auc" in drv.find_element(By.ID, "metrics").text
    assert drv.find_element(By.ID, "not-allowed").is_displayed()
    imgs = drv.find_elements(By.CSS_SELECTOR, ".plots img")
    assert imgs, "plots from the training run"
    drv.execute_script("arguments[0].scrollIntoView()", imgs[0])  # lazy-loaded below the fold
    wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", imgs[0]) > 0)
    drv.execute_script("window.scrollTo(0, 0)")
    shot(drv, "03-approval-unauthorised")
    drv.find_element(By.ID, "btn-approve").click()
    wait.until(ec.alert_is_present()).accept()
    wait.until(ec.presence_of_element_located((By.ID, "error-detail")))
    assert drv.find_element(By.TAG_NAME, "h1").text == "403"
    assert "may not approve" in drv.find_element(By.ID, "error-detail").text
    shot(drv, "04-refused-403")
    obj = env.kube.custom.get_namespaced_custom_object("modelops.dev", "v1alpha1", ns, "modeldeployments", "churn")
    assert "modelops.dev/approve" not in (obj["metadata"].get("annotations") or {})

    # alice approves
    sign_in(drv, console.url, env.users.alice)  # a new session: the cookies go first
    drv.get(f"{console.url}/approvals/modeldeployments/{ns}/churn/2")
    wait.until(ec.presence_of_element_located((By.ID, "btn-approve")))
    assert not drv.find_elements(By.ID, "not-allowed")
    shot(drv, "05-approval-authorised")
    drv.find_element(By.ID, "btn-approve").click()
    wait.until(ec.alert_is_present()).accept()
    wait.until(ec.presence_of_element_located((By.ID, "done")))
    assert f"Decided: approve by {env.users.alice_name}" in drv.find_element(By.ID, "status").text
    assert not drv.find_elements(By.ID, "btn-approve"), "no buttons once decided"
    shot(drv, "06-approved")
    obj = env.kube.custom.get_namespaced_custom_object("modelops.dev", "v1alpha1", ns, "modeldeployments", "churn")
    assert obj["metadata"]["annotations"]["modelops.dev/approve"] == "2"

    # the schedule's page and its approval view
    drv.get(f"{console.url}/schedules/{ns}/churn-train")
    wait.until(ec.presence_of_element_located((By.ID, "runs")))
    shot(drv, "07-schedule")
    drv.get(f"{console.url}/approvals/retrainschedules/{ns}/churn-train/2")
    wait.until(ec.presence_of_element_located((By.ID, "metrics")))
    shot(drv, "08-approval-retrainschedule")
    time.sleep(0)
