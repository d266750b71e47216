"""Screenshots of the console during `modelops demo`'s approval step, taken in Debian's headless Chromium
(Selenium through chromedriver, as tests/cluster/console/test_console_browser.py drives it), and the approval
made there by clicking Approve as a person would.

    uv run python -m modelops_dev.e2e.console_shots --namespace modelops-demo --version 2 \
        --token-file build/demo/modelops-demo/approver-token --out docs/screenshots [--approve]

While the demo waits for approval (`MODELOPS_DEMO_APPROVAL_WAIT`), this signs in to the console (through
`kubectl port-forward` to its Service, whatever the cluster) as

  1. a user who may see but not approve: a ServiceAccount `demo-viewer` of the namespace with no binding (the
     console authenticates every token with TokenReview and shows the evidence to any authenticated user;
     Approve is authorised by SubjectAccessReview): approval page, then Approve clicked -> the server's 403;
  2. the demo approver (the token file the demo writes): overview, model page, approval page, and with
     `--approve` the Approve button clicked -> the decision page.

Each PNG is the browser window (1400 px wide), re-encoded with a palette when that keeps it under 300 KB.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from modelops_dev.e2e.console import CONSOLE_PORT
from modelops_dev.e2e.gateway_traffic import port_forward
from modelops_dev.e2e.kube import Kube
from modelops_dev.e2e.loop import release_name

VIEWER = "demo-viewer"
MAX_BYTES = 300_000


@contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        raise SystemExit("Chromium or chromedriver is not installed: apt-get install -y chromium chromium-driver")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(driver), options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def save(drv: Any, out: Path, name: str) -> Path:
    """The window as a PNG; if it is over MAX_BYTES, the same pixels with a 256-colour palette."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    drv.save_screenshot(str(path))
    if path.stat().st_size > MAX_BYTES:
        with Image.open(path) as img:
            small = img.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        small.save(path, optimize=True)
    print(f"  {path} ({path.stat().st_size // 1024} KB): {drv.title}")
    return path


def sign_in(drv: Any, base: str, token: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    drv.delete_all_cookies()
    drv.get(base + "/login")
    drv.find_element(By.ID, "token").send_keys(token)
    drv.find_element(By.ID, "sign-in").click()
    WebDriverWait(drv, 30).until(ec.presence_of_element_located((By.ID, "whoami")))


def viewer_token(kube: Kube, ns: str) -> str:
    """A ServiceAccount with no role binding: TokenReview accepts it, SubjectAccessReview refuses `approve`."""
    kube.kubectl("create", "serviceaccount", VIEWER, "-n", ns, check=False)
    return str(kube.kubectl("create", "token", VIEWER, "-n", ns, "--duration=1h")).strip()


def take(ns: str, version: str, token: str, out: Path, approve: bool, model: str = "churn") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    kube = Kube()
    viewer = viewer_token(kube, ns)
    with port_forward(kube.kubectl_bin, kube.env, ns, f"{release_name(ns)}-console", CONSOLE_PORT, timeout=60) as port, \
            chromium() as drv:
        base = f"http://127.0.0.1:{port}"
        approval = f"{base}/approvals/modeldeployments/{ns}/{model}/{version}"
        wait = WebDriverWait(drv, 60)

        sign_in(drv, base, viewer)
        drv.get(approval)
        wait.until(ec.presence_of_element_located((By.ID, "metrics")))
        time.sleep(1)  # the plots
        save(drv, out, "03-approval-unauthorised")
        drv.find_element(By.ID, "btn-approve").click()
        wait.until(ec.alert_is_present()).accept()
        wait.until(ec.presence_of_element_located((By.ID, "error-detail")))
        print(f"  refused: {drv.find_element(By.TAG_NAME, 'h1').text} "
              f"{drv.find_element(By.ID, 'error-detail').text[:200]}")
        save(drv, out, "04-refused-403")

        sign_in(drv, base, token)
        drv.get(base + "/")
        wait.until(ec.presence_of_element_located((By.ID, "deployments")))
        wait.until(lambda d: "(live)" in d.find_element(By.ID, "updated").text)
        save(drv, out, "01-overview")
        drv.get(f"{base}/models/{ns}/{model}")
        wait.until(ec.presence_of_element_located((By.ID, "versions")))
        time.sleep(1)
        save(drv, out, "02-model")
        drv.get(approval)
        wait.until(ec.presence_of_element_located((By.ID, "btn-approve")))
        time.sleep(1)
        save(drv, out, "05-approval-authorised")
        if approve:
            drv.find_element(By.ID, "btn-approve").click()
            wait.until(ec.alert_is_present()).accept()
            wait.until(lambda d: d.find_elements(By.ID, "done") or d.find_elements(By.ID, "error-detail"))
            time.sleep(1)
            save(drv, out, "06-approved")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--namespace", default="modelops-demo")
    ap.add_argument("--version", required=True)
    ap.add_argument("--token-file", type=Path, required=True, help="the demo approver's token (the demo prints it)")
    ap.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    ap.add_argument("--approve", action="store_true", help="click Approve as the approver at the end")
    args = ap.parse_args()
    take(args.namespace, args.version, args.token_file.read_text().strip(), args.out, args.approve)


if __name__ == "__main__":
    main()
