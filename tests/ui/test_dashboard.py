"""The dashboard in a real browser: Playwright driving Debian's Chromium (headless) against a
real ``serve`` process. Screenshots of every view go to the test's tmp path."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pipeline_core.client import Client
from pipeline_core.model import ExpandTask, TaskChange, TaskKey
from pipeline_core.state import TaskState
from pipeline_core.store import open_store
from tests.conftest import poll_until
from tests.notify.receivers import Receiver
from tests.test_remote_cli import Server

CHROMIUM = os.environ.get("PIPELINE_CORE_CHROMIUM", "/usr/bin/chromium")
playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    if os.environ.get("CI") == "true":
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

BROKEN = "tasks:\n  a: {type: noop, depends_on: [ghost]}\n"
TIMEOUT = 15_000  # ms for anything the page should show
# Paused, so its run waits: the test writes the instances as the engine would.
MAPPED = (
    "is_paused: true\ntasks:\n  files: {type: noop}\n  load: {type: noop, depends_on: [files]}\n"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def gone() -> Iterator[Receiver]:
    """A receiver that answers 410 Gone: every delivery to it fails at once."""
    receiver = Receiver(status=lambda path: 410).start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, gone: Receiver) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("ui")
    server = Server(tmp)
    (server.folder / "broken.yaml").write_text(BROKEN)
    (server.folder / "mapped.yaml").write_text(MAPPED)
    (server.folder / "orders_report.yaml").write_text(
        "schedule: {assets: 'db://orders & refunds'}\ntasks:\n  report: {type: noop}\n"
    )
    (server.folder / "alerting.yaml").write_text(
        f"notify: [{{on: [run_failed], webhook: '{gone.url}/hook'}}]\n"
        "tasks:\n  boom: {type: shell, command: 'exit 1'}\n"
    )
    server.start()
    yield server
    server.stop()


class Watched:
    """A page that records console errors and every host it asks."""

    def __init__(self, browser: Any, base: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT)
        self.errors: list[str] = []
        self.hosts: set[str] = set()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.hosts.add(urlsplit(r.url).netloc))
        self.base = base

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser: Any, served: Server) -> Iterator[Watched]:
    page = Watched(browser, served.url)
    yield page
    page.close()
    assert page.errors == []
    assert page.hosts <= {urlsplit(served.url).netloc}


def shot(watched: Watched, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    watched.page.screenshot(path=str(path), full_page=True)
    return path


def test_the_dags_view_lists_the_dags_and_the_import_error(
    watched: Watched, tmp_path: Path
) -> None:
    page = watched.page
    page.goto(watched.base + "/")
    assert page.url.endswith("/ui/")
    for dag_id in ("ok", "fails", "slow", "steps"):
        page.get_by_role("link", name=dag_id, exact=True).wait_for()
    banner = page.locator(".banner")
    banner.wait_for()
    assert "broken.yaml" in banner.inner_text() and "ghost" in banner.inner_text()
    page.locator("#live[data-state=live]").wait_for()
    shot(watched, tmp_path, "dags")


def test_trigger_with_conf_and_watch_the_squares_change_without_reload(
    watched: Watched, tmp_path: Path
) -> None:
    page = watched.page
    with Client(watched.base) as api:
        api.set_paused("steps", True)  # its run waits, queued, until the page unpauses it
    page.goto(watched.base + "/ui/")
    page.get_by_role("button", name="Trigger steps").click()
    conf = page.locator("#trigger-conf")
    conf.fill("{sha: 1}")
    page.get_by_role("alert").filter(has_text="Not JSON").wait_for()
    assert page.get_by_role("button", name="Trigger", exact=True).is_disabled()
    conf.fill('{"sha": "abc"}')
    page.get_by_role("button", name="Trigger", exact=True).click()
    squares = page.locator('.squares[data-dag="steps"]')
    squares.locator(".s-queued").wait_for()
    page.get_by_role("button", name="Unpause steps").click()
    squares.locator(".s-running").wait_for()  # the page was not reloaded: it followed events
    squares.locator(".s-success").wait_for(timeout=30_000)
    status = page.get_by_role("status").filter(has_text="Triggered")
    run_id = status.locator("a").inner_text()
    with Client(watched.base) as api:
        assert api.get_run("steps", run_id)["conf"] == {"sha": "abc"}
    shot(watched, tmp_path, "dags-after-trigger")


def test_cancel_a_long_run_and_retry_a_failed_one(watched: Watched, tmp_path: Path) -> None:
    page = watched.page
    with Client(watched.base) as api:
        api.trigger_run("slow", run_id="ui_cancel")
        api.trigger_run("fails", run_id="ui_retry")
        api.wait_run("fails", "ui_retry", 30)
    page.goto(watched.base + "/ui/dags/slow/runs/ui_cancel")
    page.locator('tr[data-task="sleepy"] .s-running').wait_for()
    page.get_by_role("button", name="■ Cancel").click()
    page.locator("h1 .s-cancelled").wait_for()
    shot(watched, tmp_path, "run-cancelled")
    page.goto(watched.base + "/ui/dags/fails/runs/ui_retry")
    page.get_by_role("button", name="boom").click()
    page.locator("pre.log").filter(has_text="going down").wait_for()
    page.get_by_role("button", name="↻ Retry failed").click()
    page.locator('tr[data-task="boom"]').filter(has_text="2 / 2").wait_for()
    shot(watched, tmp_path, "run-retried")


def test_pause_a_dag_and_see_its_detail(watched: Watched, tmp_path: Path) -> None:
    page = watched.page
    page.goto(watched.base + "/ui/dags/ok")
    page.locator("table.grid").or_(page.get_by_text("No runs yet.")).first.wait_for()
    page.locator("svg.graph").wait_for()
    page.get_by_role("button", name="Pause ok").click()
    page.get_by_role("button", name="Unpause ok").wait_for()
    with Client(watched.base) as api:
        assert api.get_dag("ok")["is_paused"] is True
        api.set_paused("ok", False)
    page.get_by_role("button", name="Pause ok").wait_for()  # the event came back to the page
    path = shot(watched, tmp_path, "dag-detail")
    docs = Path(__file__).parents[2] / "docs" / "dashboard-dag.png"
    if os.environ.get("PIPELINE_CORE_UPDATE_SCREENSHOT"):
        shutil.copy(path, docs)


def test_pools_and_health(watched: Watched, tmp_path: Path) -> None:
    page = watched.page
    page.goto(watched.base + "/ui/pools")
    row = page.locator('tr[data-pool="default_pool"]')
    row.locator("input").fill("12")
    row.get_by_role("button", name="Save").click()
    page.get_by_role("status").filter(has_text="12 slots").wait_for()
    shot(watched, tmp_path, "pools")
    with Client(watched.base) as api:
        assert {p["name"]: p["slots"] for p in api.pools.list()}["default_pool"] == 12
    page.get_by_role("link", name="Health").click()
    page.get_by_text("healthy").first.wait_for()
    assert page.url.endswith("/ui/health")
    with Client(watched.base) as api:
        before = page.locator(".card").filter(has_text="Tasks completed").inner_text()
        api.trigger_run("ok", run_id="health_counts")
    page.locator(".card").filter(has_text="Tasks completed").filter(has_not_text=before).wait_for()
    shot(watched, tmp_path, "health")
    page.go_back()
    page.locator('tr[data-pool="default_pool"]').wait_for()


def test_assets_and_a_dag_waiting_for_them(watched: Watched, tmp_path: Path) -> None:
    page = watched.page
    with Client(watched.base) as api:
        api.set_paused("orders_report", False)
    page.goto(watched.base + "/ui/assets")
    row = page.locator('tr[data-asset="db://orders"]')
    row.filter(has_text="orders_report").wait_for()
    assert "never" in row.inner_text()
    with Client(watched.base) as api:
        api.assets.post("db://orders", {"rows": 7})
    row.filter(has_text="1").filter(has_not_text="never").wait_for()  # live, without reload
    page.locator("table[aria-label='latest updates']").filter(has_text='"rows":7').wait_for()
    shot(watched, tmp_path, "assets")
    row.get_by_role("link", name="orders_report").click()
    page.locator("[data-assets]").filter(has_text="db://orders \u00d71").wait_for()
    with Client(watched.base) as api:
        api.assets.post("refunds")
        poll_until(lambda: len(api.list_runs("orders_report")) == 1, timeout=30)


def test_a_runs_notifications_and_the_failed_deliveries_on_health(
    watched: Watched, tmp_path: Path, gone: Receiver
) -> None:
    page = watched.page
    gone.hang = threading.Event()  # the delivery waits until the page shows it pending
    try:
        with Client(watched.base) as api:
            api.trigger_run("alerting", run_id="ui_alert")
            api.wait_run("alerting", "ui_alert", 30)
        page.goto(watched.base + "/ui/dags/alerting/runs/ui_alert")
        row = page.locator("table.notifications tbody tr")
        row.locator(".s-pending").wait_for()
        gone.hang.set()
        row.locator(".s-failed").wait_for()  # live: the page is not loaded again
    finally:
        gone.hang.set()
        gone.hang = None
    assert "run_failed" in row.inner_text() and "410" in row.inner_text()
    before = len(gone.received)
    row.get_by_role("button", name="Redeliver").click()
    page.get_by_role("status").filter(has_text="Redeliver: done").wait_for()
    gone.wait_for(before + 1)  # sent again, with the same id
    assert gone.received[-1].delivery == gone.received[before - 1].delivery
    shot(watched, tmp_path, "run-notifications")
    page.goto(watched.base + "/ui/health")
    failed = page.locator("table.notifications tbody tr").filter(has_text="ui_alert")
    failed.wait_for()
    assert "410" in failed.inner_text()
    page.locator(".card").filter(has_text="Notifications failed").wait_for()
    shot(watched, tmp_path, "health-notifications")


def test_a_run_with_2000_mapped_instances(watched: Watched, served: Server, tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{served.tmp / 'cli.db'}")
    try:
        with Client(watched.base) as api:
            api.trigger_run("mapped", run_id="wide")
        store.runs.apply([ExpandTask(TaskKey("mapped", "wide", "load"), 2000)])
        instance = [TaskKey("mapped", "wide", "load", i) for i in range(2000)]
        store.tasks.transition_tasks(
            [TaskChange(k, TaskState.QUEUED, TaskState.RUNNING, try_number=1) for k in instance[:3]]
        )
        store.tasks.transition_tasks(
            [TaskChange(instance[1], TaskState.RUNNING, TaskState.FAILED, error="row 1 is bad")]
        )
        store.task_data.append_log(instance[2], 1, "loading part 2\n")
    finally:
        store.close()
    page = watched.page
    page.goto(watched.base + "/ui/dags/mapped/runs/wide")
    row = page.locator('tr[data-task="load"]')
    row.locator(".mapped").filter(has_text="\u00d72000").wait_for()
    row.get_by_role("button", name="load").click()
    panel = page.locator("section.instances")
    panel.get_by_text("1\u2013100 of 2000").wait_for()
    assert panel.locator("tbody tr").count() == 100
    panel.get_by_role("button", name="Next").click()
    panel.get_by_text("101\u2013200 of 2000").wait_for()
    panel.locator("#instance-state").select_option("failed")
    panel.get_by_text("1\u20131 of 1").wait_for()
    assert "row 1 is bad" in panel.locator("tbody").inner_text()
    panel.locator("#instance-state").select_option("running")
    panel.get_by_role("button", name="instance 2").click()
    page.get_by_role("heading", name="Task load [2]").wait_for()
    page.locator("pre.log").filter(has_text="loading part 2").wait_for()
    shot(watched, tmp_path, "run-mapped")
    page.goto(watched.base + "/ui/dags/mapped")
    cell = page.locator("table.grid td.mapped")
    cell.filter(has_text="2000").wait_for()
    label = cell.locator(".sq").get_attribute("aria-label") or ""
    assert "\u00d72000: 1 failed, 1997 queued, 2 running" in label, label


def test_the_page_reconnects_after_a_server_restart(browser: Any, tmp_path: Path) -> None:
    """The stream comes back by itself, and a page that could not load while the server was
    away (asked for then, or still loading when it went) is loaded again when it returns."""
    server = Server(tmp_path).start()
    page = Watched(browser, server.url)
    try:
        page.page.goto(server.url + "/ui/")
        page.page.locator("#live[data-state=live]").wait_for()
        server.stop()
        page.page.locator("#live[data-state=reconnecting]").wait_for()
        page.page.get_by_role("link", name="DAGs").click()
        page.page.get_by_text("Could not load this page").wait_for()
        server.start()
        page.page.locator("#live[data-state=live]").wait_for(timeout=30_000)
        with Client(server.url) as api:
            api.trigger_run("ok", run_id="after_restart")
        page.page.locator('.squares[data-dag="ok"] .s-success').wait_for()
        # the console reports the refused connections while the server was away, and now
        # and then a request the stopping server had accepted and reset, or the stream the
        # stop cut (its last chunk not read before the socket closed)
        away = ("ERR_CONNECTION_REFUSED", "ERR_CONNECTION_RESET", "ERR_INCOMPLETE_CHUNKED_ENCODING")
        page.errors = [e for e in page.errors if not any(a in e for a in away)]
        assert page.errors == []
    finally:
        page.close()
        server.stop()


def test_a_server_with_a_token(browser: Any, tmp_path: Path) -> None:
    server = Server(tmp_path, "--auth-token", "s3cret").start()
    page = Watched(browser, server.url)
    try:
        page.page.goto(server.url + "/ui/")
        dialog = page.page.get_by_role("dialog")
        dialog.wait_for()
        page.page.locator("#token-input").fill("s3cret")
        page.page.get_by_role("button", name="Use token").click()
        page.page.get_by_role("link", name="ok", exact=True).wait_for()
        page.page.locator("#live[data-state=live]").wait_for()
        stored = page.page.evaluate("sessionStorage.getItem('pipeline-core-token')")
        assert stored == "s3cret"
        page.errors = [e for e in page.errors if "401" not in e]
        assert page.errors == []
    finally:
        page.close()
        server.stop()


def test_the_files_have_a_strict_policy_and_cache_headers(served: Server) -> None:
    import requests

    page = requests.get(served.url + "/ui/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-cache"
    css = next(p for p in page.text.split('"') if p.startswith("/ui/app.css?v="))
    hashed = requests.get(served.url + css, timeout=10)
    assert "immutable" in hashed.headers["Cache-Control"]
    again = requests.get(
        served.url + "/ui/app.js", headers={"If-None-Match": hashed.headers["ETag"]}, timeout=10
    )
    assert again.status_code == 200  # another file's tag
    tag = requests.get(served.url + "/ui/app.js", timeout=10).headers["ETag"]
    assert (
        requests.get(
            served.url + "/ui/app.js", headers={"If-None-Match": tag}, timeout=10
        ).status_code
        == 304
    )
    assert requests.get(served.url + "/ui/nope.js", timeout=10).status_code == 404
    assert requests.get(served.url + "/ui/dags/ok/runs/x", timeout=10).text == page.text  # a view


def test_keyboard_and_a_phone_width(watched: Watched, tmp_path: Path) -> None:
    page = watched.page
    page.goto(watched.base + "/ui/")
    page.locator("main[data-ready]").wait_for()
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.get_by_role("link", name="steps", exact=True).focus()
    page.keyboard.press("Enter")
    page.locator("main[data-ready] svg.graph").wait_for()
    assert page.url.endswith("/ui/dags/steps")
    page.go_back()
    page.locator("main[data-ready] table.dags").wait_for()
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
    shot(watched, tmp_path, "dags-phone")


def with_token(browser: Any, server: Server, token: str) -> Watched:
    page = Watched(browser, server.url)
    page.page.add_init_script(f"sessionStorage.setItem('pipeline-core-token', {token!r})")
    return page


def test_roles_hide_actions_and_settings_keep_secrets_write_only(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline_core.credentials.cipher import KEY_ENV, Cipher

    monkeypatch.setenv(KEY_ENV, Cipher.new_key())
    store = open_store(f"sqlite:///{tmp_path / 'cli.db'}")
    tokens = {role: store.accounts.create_token(role, role)[1] for role in ("viewer", "admin")}
    store.close()
    server = Server(tmp_path).start()
    viewer, admin = with_token(browser, server, tokens["viewer"]), None
    try:
        viewer.page.goto(server.url + "/ui/")
        viewer.page.get_by_role("link", name="ok", exact=True).wait_for()
        assert viewer.page.locator("#who").inner_text() == "viewer · viewer"
        assert not viewer.page.get_by_role("button", name="Trigger ok").is_visible()
        viewer.page.goto(server.url + "/ui/settings")
        viewer.page.locator("#main[data-ready]").wait_for()
        assert not viewer.page.locator("#variable-key").is_visible()

        admin = with_token(browser, server, tokens["admin"])
        admin.page.goto(server.url + "/ui/settings")
        admin.page.locator("#main[data-ready]").wait_for()
        admin.page.locator("#variable-key").fill("api_token")
        admin.page.locator("#variable-value").fill("tok-write-only-991")
        admin.page.get_by_role("button", name="Set variable").click()
        admin.page.locator("tr[data-variable=api_token]").wait_for()
        admin.page.locator("#connection-id").fill("warehouse")
        admin.page.locator("#connection-uri").fill("postgresql://etl:pw-write-only-992@db:5432/w")
        admin.page.get_by_role("button", name="Set connection").click()
        row = admin.page.locator("tr[data-connection=warehouse]")
        row.wait_for()
        assert "***" in row.inner_text() and "etl" in row.inner_text()
        html = admin.page.content()
        assert "tok-write-only-991" not in html and "pw-write-only-992" not in html
        assert admin.page.locator("#variable-value").input_value() == ""
        assert viewer.errors == [] and admin.errors == []
    finally:
        viewer.close()
        if admin is not None:
            admin.close()
        server.stop()


def test_the_grid_shows_each_runs_version_and_the_versions_diff(
    browser: Any, tmp_path: Path
) -> None:
    server = Server(tmp_path, "--rescan-interval", "1")
    dag_file = server.folder / "versioned.yaml"
    dag_file.write_text("tasks:\n  a: {type: noop}\n  b: {type: noop, depends_on: [a]}\n")
    server.start()
    page = Watched(browser, server.url)
    try:
        with Client(server.url) as api:
            api.trigger_run("versioned", run_id="before_edit")
            api.wait_run("versioned", "before_edit", 30)
            dag_file.write_text("tasks:\n  a: {type: noop}\n  c: {type: noop, depends_on: [a]}\n")
            poll_until(lambda: len(api.versions.list("versioned")) == 2, 15)
            api.trigger_run("versioned", run_id="after_edit")
            api.wait_run("versioned", "after_edit", 30)
        page.page.goto(server.url + "/ui/dags/versioned")
        grid = page.page.locator("table.grid")
        grid.wait_for()
        grid.locator("td.version-change").wait_for()
        assert grid.locator("td.version").count() == 2
        assert grid.locator("th.task", has_text="b").count() == 1  # only the older run had it
        assert grid.locator("td.absent").count() == 2  # b in the new run, c in the old one
        versions = page.page.get_by_role("table", name="versions")
        assert versions.locator("tbody tr").count() == 2
        diff = page.page.get_by_label("diff between versions")
        diff.locator(".diff-add", has_text="c: {type: noop").wait_for()
        diff.locator(".diff-del", has_text="b: {type: noop").wait_for()
        shot(page, tmp_path, "dag-versions")
        assert page.errors == []
    finally:
        page.close()
        server.stop()


def test_the_dags_view_pages_and_searches_on_the_server(browser: Any, tmp_path: Path) -> None:
    server = Server(tmp_path)
    for index in range(120):
        (server.folder / f"many_{index:03d}.yaml").write_text(
            f"description: number {index}\ntags: [{'even' if index % 2 == 0 else 'odd'}]\n"
            "tasks:\n  a: {type: noop}\n"
        )
    server.start()
    page = Watched(browser, server.url)
    try:
        page.page.goto(server.url + "/ui/")
        caption = page.page.locator("table.dags caption")
        caption.filter(has_text="1\u201350 of").wait_for()
        assert page.page.locator("table.dags tbody tr").count() == 50  # a page, not them all
        page.page.get_by_role("button", name="Next →").click()
        caption.filter(has_text="51\u2013100 of").wait_for()
        page.page.locator("#dag-search").fill("number 7")  # 7 and 70 to 79, by description
        caption.filter(has_text="1\u201311 of 11 DAGs").wait_for()
        page.page.locator("#tag-filter").fill("even")
        caption.filter(has_text="1\u20135 of 5 DAGs").wait_for()
        assert page.page.get_by_role("button", name="Next →").is_disabled()
        shot(page, tmp_path, "dags-searched")
        assert page.errors == []
    finally:
        page.close()
        server.stop()
