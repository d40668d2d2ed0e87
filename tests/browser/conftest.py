"""Browser tests: Playwright driving Debian's chromium against the console served by gunicorn and WhiteNoise (as
scripts/run serves it), a real qcluster and the demo cloud.

Screenshots go to $GLANCESYNC_ARTIFACTS_DIR (default: test-artifacts/ in the repository). Without chromium the
tests are skipped, unless GLANCESYNC_REQUIRE_BROWSER=1 (CI) makes that a failure.
"""

import os
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command

from sync.models import MasterSettings
from sync.tasks import refresh_status
from tests.cluster import DEMO, ROOT, Cluster
from tests.conftest import user_with_role
from tests.web import Web, collected_static

CHROMIUM = os.environ.get("GLANCESYNC_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "browser-test-password"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM):
        if os.environ.get("GLANCESYNC_REQUIRE_BROWSER"):
            pytest.fail(f"no chromium at {CHROMIUM} (apt install chromium)")
        pytest.skip(f"no chromium at {CHROMIUM} (apt install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; Django refuses database calls there unless told
    # it is safe (it is: the loop only drives the browser).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def artifacts(request) -> Path:
    folder = Path(os.environ.get("GLANCESYNC_ARTIFACTS_DIR", ROOT / "test-artifacts")) / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def static_root(tmp_path_factory) -> Path:
    return collected_static(tmp_path_factory.mktemp("static"))


@pytest.fixture
def console(transactional_db, static_root, demo_cloud, settings, tmp_path, django_user_model):
    """The demo configuration in the database, its snapshot, an operator account, a running cluster, and the
    console served as in production (gunicorn, WhiteNoise): its URL."""
    settings.GLANCESYNC_CLOUD = f"files:{demo_cloud}?latency=0.1"
    call_command("import_glancesync_conf", str(DEMO / "glancesync.conf"), stdout=None)
    MasterSettings.objects.filter(pk=1).update(cloud=settings.GLANCESYNC_CLOUD)
    refresh_status()
    user_with_role(django_user_model, "otto", "operator", PASSWORD)
    cluster = Cluster(tmp_path, settings.GLANCESYNC_CLOUD)
    cluster.start()
    web = Web(tmp_path, settings.GLANCESYNC_CLOUD, static_root).start()
    yield web.url
    web.stop()
    cluster.stop()


def csp_violations(page) -> list[str]:
    """The Content-Security-Policy violations the page reports from now on (chromium logs each to the console)."""
    found: list[str] = []
    page.on(
        "console", lambda message: found.append(message.text) if "Content Security Policy" in message.text else None
    )
    return found


@pytest.fixture
def page(browser, console):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    violations = csp_violations(page)
    page.set_default_timeout(20_000)
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm and confirm() dialogs: say yes
    page.goto(console + "/")
    page.get_by_label("Username").fill("otto")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    yield page
    context.close()
    assert violations == [], "the page broke its Content-Security-Policy"
