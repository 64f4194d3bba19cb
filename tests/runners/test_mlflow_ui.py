"""The MLflow UI as a user meets it: `sweep run` ends with the command and URL that open the
comparison of the trial runs; that URL, served by the real `mlflow ui` and loaded in headless
Chromium, lists every trial run by name (on the runs page they would sit under the collapsed
parent run). The experiment is tagged for training runs and the parent run holds the report. A
screenshot of the page is saved beside the test's files (``runs_page.png``).

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (``.ci/run``
installs them): the test skips without them, and fails instead under CI=true.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from runners_helpers import TINY, mlflow_runs, run_main, write_spec

pytestmark = pytest.mark.timeout(420)


def _require(what: str, ok: bool) -> None:
    if ok:
        return
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{what} is required under CI=true")
    pytest.skip(f"{what} is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_up(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow ui exited: {proc.stdout.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"mlflow ui did not answer within {timeout} s")


def test_the_comparison_page_lists_the_trial_runs(tmp_path, capsys, monkeypatch):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        webdriver = None
    _require("selenium", webdriver is not None)
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    _require("chromium and chromium-driver", bool(chromium and driver_bin))

    monkeypatch.chdir(tmp_path)
    spec = write_spec(tmp_path, TINY)
    code, out, _ = run_main(capsys, "run", spec)  # the default store: ./mlflow.db
    assert code == 0, out
    hint = re.search(r"Compare in the browser: (mlflow ui .*?)  then open (\S+)", out)
    assert hint, out
    command, url = hint.group(1), hint.group(2)
    assert command == f"mlflow ui --backend-store-uri sqlite:///{tmp_path / 'mlflow.db'}"
    client, runs = mlflow_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "tiny")
    exp = client.get_experiment_by_name("tiny")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    parent = next(r for r in runs if r.data.tags["sweep_role"] == "parent")
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert "report/report.md" in artifacts and any(a.endswith(".png") for a in artifacts)
    names = sorted(r.info.run_name for r in runs if r.data.tags["sweep_role"] == "trial")
    assert len(names) == 4

    port = _free_port()
    args = command.split()[2:] + ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    browser = None
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_up(base, server, timeout=180)
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
            options.add_argument(flag)
        options.add_argument("--window-size=1600,1000")
        browser = webdriver.Chrome(service=Service(driver_bin), options=options)
        browser.set_page_load_timeout(120)
        browser.get(url.replace("http://127.0.0.1:5000", base))

        def listed(drv) -> bool:
            text = drv.find_element("tag name", "body").text
            return all(name in text for name in names)

        try:
            WebDriverWait(browser, 120, poll_frequency=1).until(listed)
        finally:
            browser.save_screenshot(str(tmp_path / "runs_page.png"))
        assert "Comparing 4 Runs" in browser.find_element("tag name", "body").text
    finally:
        if browser is not None:
            browser.quit()
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
