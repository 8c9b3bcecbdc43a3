"""Browser tests of the console: Debian's Chromium driven by Playwright for Python (never a downloaded browser), a
real `soc serve` on loopback serving the console, users signed in through the real form, screenshots kept under
tests/artifacts/screenshots/, and axe-core (installed by `npm ci` from tests/browser/package-lock.json) for
accessibility.

Fixtures: ``browser`` (session), ``console_server`` (session: the served suite, its URL, its configuration, its
``soc`` command line and users), ``signed_in_page(role, agency=None)`` (a new browser context, signed in),
``page`` (a new context, not signed in). Helpers: ``screenshot(page, name)``, ``check_accessibility(page)``.

Without Chromium, Playwright or npm these tests are skipped with the reason on a developer's machine and fail in CI
(CI=true), where `make test` has installed them (scripts/install-system-deps.sh, pyproject's test extras)."""

from __future__ import annotations

import itertools
import os
import socket
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from tests.conftest import PROJECT, cannot_run, free_port

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("SOC_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = PROJECT / "tests" / "artifacts" / "screenshots"
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
VIEWPORT = {"width": 1366, "height": 768}
PASSWORD = "browser test passphrase"
SOC = [sys.executable, "-m", "suite.cli"]


# --- the served suite ----------------------------------------------------------------------------------------------
class ConsoleServer:
    """`soc serve` in a process of its own with a configuration of its own (SQLite in a temporary folder, the
    sample inventory, the suite's Linux rules), serving the API and the console on a free loopback port."""

    def __init__(self, folder: Path, lockout: dict | None = None):
        self.folder = folder
        inventory = folder / "province.yaml"
        shutil.copy(PROJECT / "inventory" / "sample" / "province.yaml", inventory)
        self.config = folder / "soc.yaml"
        self.config.write_text(yaml.safe_dump({
            "data_dir": str(folder),
            "store": {"url": f"sqlite:///{folder / 'soc.db'}"},
            "syslog": {"host": "127.0.0.1", "udp_port": free_port(), "tcp_port": free_port()},
            "api": {"host": "127.0.0.1", "port": free_port()},
            "inventory": {"path": str(inventory)},
            "detections": {"sigma_rule_dirs": [str(PROJECT / "detections" / "rules" / "linux")]},
            "pipeline": {"flush_interval_seconds": 0.05},
            "reports": {"schedule_enabled": False},
            "extensions": ["playbooks.service", "detections.indicators.extension", "soc_api.extension"],
            # Every browser signs in from 127.0.0.1: the per-address back-off would count all tests together.
            "soc_api": {"console": {"lockout": {"address_free_failures": 10000, "address_lock_failures": 20000,
                                                **(lockout or {})}}},
        }))
        self.settings_data = yaml.safe_load(self.config.read_text())
        self.port = self.settings_data["api"]["port"]
        self.url = f"http://127.0.0.1:{self.port}"
        self.syslog_tcp = self.settings_data["syslog"]["tcp_port"]
        self.syslog_udp = self.settings_data["syslog"]["udp_port"]
        self.log_path = folder / "serve.log"
        self._log = self.log_path.open("ab")
        self._names = itertools.count(1)
        self.users: dict[str, dict] = {}
        self.proc = subprocess.Popen(SOC + ["serve", "--config", str(self.config)], stdout=self._log,
                                     stderr=self._log, env=self.env(), cwd=PROJECT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("soc serve stopped: " + self.log_path.read_text())
            try:
                if httpx.get(f"{self.url}/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError("soc serve did not come up: " + self.log_path.read_text())

    @staticmethod
    def env() -> dict:
        return {k: v for k, v in os.environ.items() if not k.startswith("SOC__")}

    def soc(self, *args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess:
        """The real `soc` command line against this suite's configuration."""
        done = subprocess.run(SOC + list(args) + ["--config", str(self.config)], input=stdin, capture_output=True,
                              text=True, env=self.env(), cwd=PROJECT, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"soc {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done

    def create_user(self, role: str, agency: str | None = None, password: str = PASSWORD,
                    user_id: str | None = None, name: str | None = None) -> str:
        """A user with a console password, made through `soc users create … --password-stdin`."""
        user_id = user_id or f"{role.replace('_', '-')}{next(self._names)}"
        args = ["users", "create", user_id, "--role", role, "--password-stdin"]
        if agency:
            args += ["--agency", agency]
        if name:
            args += ["--name", name]
        self.soc(*args, stdin=password + "\n")
        self.users[user_id] = {"role": role, "agency": agency, "password": password}
        return user_id

    @contextmanager
    def store(self):
        """The suite's store, opened beside the running suite (SQLite in WAL mode takes both)."""
        from soc.storage import open_store
        from suite.settings import load_settings

        store = open_store(load_settings(self.config, environ={}))
        try:
            yield store
        finally:
            store.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@pytest.fixture(scope="session")
def console_server(tmp_path_factory):
    server = ConsoleServer(tmp_path_factory.mktemp("console-server"))
    try:
        yield server
    finally:
        server.stop()


# --- the browser ---------------------------------------------------------------------------------------------------
# Module scope: while Playwright's sync API runs, its event loop counts as running in this thread, and every later
# test of the session that runs an event loop of its own (anyio.run, asyncio.run) would fail. Ended after each
# browser test module, it leaves the rest of the suite as it found it.
@pytest.fixture(scope="module")
def playwright_driver():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        cannot_run("Playwright for Python is not installed (`make test` installs the test extras)",
                   "playwright is missing: in CI the browser tests must run")
    if not Path(CHROMIUM).exists():
        cannot_run(f"no Chromium at {CHROMIUM} (`make test` installs Debian's chromium)",
                   f"no Chromium at {CHROMIUM}: in CI the browser tests must run")
    driver = sync_playwright().start()
    try:
        yield driver
    finally:
        driver.stop()


@pytest.fixture(scope="module")
def browser(playwright_driver):
    launched = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    try:
        yield launched
    finally:
        launched.close()


def new_context(browser, **options):
    """A fresh browser profile the size of the smallest screen the console is made for, in Vietnam's time zone."""
    settings = {"viewport": VIEWPORT, "timezone_id": "Asia/Ho_Chi_Minh", "locale": "vi-VN"}
    settings.update(options)
    context = browser.new_context(**settings)
    context.set_default_timeout(15_000)
    return context


@pytest.fixture
def page(browser):
    """A page in a new context, not signed in."""
    context = new_context(browser)
    try:
        yield context.new_page()
    finally:
        context.close()


def sign_in(page, base_url: str, user_id: str, password: str = PASSWORD, next_path: str = "/console/home") -> None:
    """Through the real form, as a person would: the page asked for sends to the sign-in page, then back to it."""
    page.goto(f"{base_url}{next_path}")
    page.wait_for_url("**/console/signin**")
    page.locator("#username").fill(user_id)
    page.locator("#password").fill(password)
    page.locator("form.stack button[type=submit]").click()
    page.wait_for_url(lambda url: url.endswith(next_path) and "/console/signin" not in url)


@pytest.fixture
def signed_in_page(browser, console_server):
    """``signed_in_page(role, agency=None, next_path="/console/home")``: a page in a new browser context, signed in
    through the form as a new user of that role (made with the real CLI). The user's id is ``page.soc_user``."""
    contexts = []

    def make(role: str, agency: str | None = None, next_path: str = "/console/home", **context_options):
        user_id = console_server.create_user(role, agency)
        context = new_context(browser, **context_options)
        contexts.append(context)
        made = context.new_page()
        sign_in(made, console_server.url, user_id, next_path=next_path)
        made.soc_user = user_id
        return made

    try:
        yield make
    finally:
        for context in contexts:
            context.close()


# --- screenshots and accessibility ---------------------------------------------------------------------------------
def screenshot(page, name: str) -> Path:
    """A PNG of the page as it is (the viewport), kept as a test artifact: tests/artifacts/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


_AXE: list[str] = []


def load_axe() -> str:
    """axe-core's source, from the registry at the version the lockfile pins (`npm ci` the first time)."""
    if _AXE:
        return _AXE[0]
    if not AXE.exists():
        npm = shutil.which("npm")
        if npm is None:
            cannot_run("npm is not installed (`make test` installs it): no accessibility checks",
                       "npm is missing: in CI the accessibility checks must run")
        done = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=HERE,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not AXE.exists():
            cannot_run(f"npm ci failed in tests/browser: {done.stderr[-500:]}",
                       f"npm ci failed in tests/browser (CI must run the accessibility checks): {done.stderr[-500:]}")
    _AXE.append(AXE.read_text(encoding="utf-8"))
    return _AXE[0]


@pytest.fixture(scope="session")
def axe_source() -> str:
    return load_axe()


IMPACT_FAILS = ("serious", "critical")


def check_accessibility(page, *, tags=("wcag2a", "wcag2aa", "wcag21a", "wcag21aa"),
                        exclude_rules: tuple[str, ...] = ()) -> list[dict]:
    """Run axe-core on the page as it is; fail the test on any serious or critical violation (listed with the
    elements), and return the lesser ones."""
    source = load_axe()
    # Evaluated through the DevTools protocol: the page's Content Security Policy (no inline scripts) stays on.
    page.evaluate(source + "\n;undefined")
    options = {"runOnly": {"type": "tag", "values": list(tags)},
               "rules": {rule: {"enabled": False} for rule in exclude_rules}}
    result = page.evaluate("options => axe.run(document, options)", options)
    violations = result["violations"]
    bad = [v for v in violations if v.get("impact") in IMPACT_FAILS]
    if bad:
        lines = []
        for v in bad:
            targets = [", ".join(node["target"]) + ": " + (node.get("failureSummary") or "").replace("\n", " ")
                       for node in v["nodes"][:5]]
            lines.append(f"{v['impact']} {v['id']}: {v['help']} ({len(v['nodes'])} elements)\n    " +
                         "\n    ".join(targets))
        pytest.fail(f"accessibility of {page.url}:\n" + "\n".join(lines))
    return [{"id": v["id"], "impact": v.get("impact"), "nodes": len(v["nodes"])} for v in violations]


# --- shared steps of the browser tests ----------------------------------------------------------------------------
SUITE_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")  # the suite's configured zone: year-less syslog times are read in it


def switch_language(page, lang: str, link: str) -> None:
    page.get_by_role("link", name=link, exact=True).click()
    page.wait_for_function(f"document.documentElement.lang === '{lang}'")


def brute_force(server, address: str, host: str = "so-tttt-web-01", first_port: int = 4440) -> None:
    """Five failed SSH logins from ``address`` to ``host`` over the suite's syslog TCP port: its SSH Brute Force rule
    raises an alert."""
    now = datetime.now(timezone.utc).astimezone(SUITE_ZONE)
    lines = b"".join((f"<38>{now:%b} {now.day:2d} {now:%H:%M:%S} {host} sshd[7]: Failed password for root from "
                      f"{address} port {first_port + i} ssh2\n").encode() for i in range(5))
    with socket.create_connection(("127.0.0.1", server.syslog_tcp)) as sock:
        sock.sendall(lines)


@contextmanager
def api_client(server, role: str, name: str):
    """An HTTP client with an API key of ``role`` for the served suite (the API beside the console)."""
    from soc_api.keys import create_key

    with server.store() as store:
        key = create_key(store, role, name=name)[0]
    with httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=30) as client:
        yield client


def wait_for_alert(api, address: str, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = api.get("/api/v1/alerts", params={"entity": address, "limit": 5}).json()["alerts"]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no alert about {address}")

