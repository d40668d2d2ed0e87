"""Every console page fits its window: at 1280 px (a laptop) and at 390 px (a phone) the page itself never scrolls
sideways, tables that cannot fit scroll inside their own box, the overview's share bars stay in view, and the
phone's collapsed menu still reaches every page. A screenshot of every page at both widths goes to the artifacts."""

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from sync import runs, tasks
from sync.forms import SyncScheduleForm
from sync.models import Alert, AlertChannel, AlertDelivery, ApiToken, Backup, SyncRun
from tests.browser.conftest import PASSWORD, csp_violations
from tests.cluster import wait_for
from tests.conftest import user_with_role

pytestmark = pytest.mark.browser

WINDOWS = {"laptop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}

# Every element that sticks out of the window and is not inside a box that scrolls (or clips) it: what makes the
# page scroll sideways, named so that a failure says which element to fix. An absolutely positioned element
# escapes a box that is not positioned itself, so it counts as sticking out.
OVERFLOW = """() => {
  const width = window.innerWidth, root = document.documentElement;
  const clipped = (el) => {
    if (getComputedStyle(el).position === "absolute") return false;
    for (let box = el.parentElement; box && box !== document.body; box = box.parentElement) {
      if (getComputedStyle(box).overflowX !== "visible") return true;
    }
    return false;
  };
  const culprits = [...document.body.querySelectorAll("*")]
    .filter((el) => el.getBoundingClientRect().right > width + 0.5 && !clipped(el))
    .slice(0, 5)
    .map((el) => `${el.tagName.toLowerCase()}.${[...el.classList].join(".")} "${el.textContent.trim().slice(0, 40)}"`);
  return {scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, innerWidth: width, culprits};
}"""


def log_in(browser, console, window, user="otto", password=PASSWORD):
    context = browser.new_context(viewport=window)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(console + "/accounts/login/")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Regions", exact=True)).to_be_visible()
    return page


@pytest.fixture
def content(console, django_user_model):
    """Something on every page: a finished run, a backup, a schedule, a failing alert channel and its alert, a
    token. Returns the run's id."""
    run = runs.start_run(["Bilbao", "partner:Lisbon"], dry_run=True, trigger="console", started_by="otto")
    wait_for(lambda: SyncRun.objects.get(pk=run.pk).finished, what="the dry run to end")
    backup = Backup.objects.create(created_by="otto", regions=["Bilbao", "partner:Lisbon"], folder="backup_glance_fit")
    tasks.make_backup(backup.pk)
    form = SyncScheduleForm({"name": "nightly", "cron": "0 2 * * *", "regions": "Bilbao, partner:Lisbon"})
    assert form.is_valid(), form.errors
    form.save()
    channel = AlertChannel.objects.create(
        name="ops-chat", kind="webhook", webhook_url="https://hooks.example.org/x", failing_since=timezone.now(),
        last_error="the webhook answered HTTP 500 (Internal Server Error) after 4 attempts",
    )  # fmt: skip
    alert = Alert.objects.create(
        key="layout:1", event="run_failed", title="GlanceSync run #7 failed", link=f"/runs/{run.pk}/",
        text="- Bilbao: cannot upload debian-12-genericcloud-amd64: Glance answered 503\n- partner:Lisbon: done",
    )  # fmt: skip
    AlertDelivery.objects.create(
        alert=alert, channel=channel, state="failed", attempts=4, last_error="the webhook answered HTTP 500"
    )
    ApiToken.issue(django_user_model.objects.get(username="otto"), "release pipeline")
    return run.pk


def test_it_fits_every_page_at_laptop_and_phone_widths(browser, console, content, artifacts):
    pages = {
        "overview": "/", "matrix": "/matrix/", "region": "/regions/Bilbao/",
        "region-partner": "/regions/partner:Lisbon/", "preview": "/preview/", "conflicts": "/conflicts/",
        "runs": "/runs/", "run": f"/runs/{content}/", "schedules": "/schedules/", "backups": "/backups/",
        "alerts": "/alerts/", "tokens": "/tokens/",
    }  # fmt: skip
    too_wide, watched = [], []
    for name, window in WINDOWS.items():
        page = log_in(browser, console, window)
        watched.append(csp_violations(page))
        for page_name, path in pages.items():
            page.goto(console + path)
            expect(page.locator("h1")).to_be_visible()
            page.locator("details").evaluate_all("all => all.forEach(details => { details.open = true; })")  # logs
            page.screenshot(path=artifacts / f"{page_name}-{name}.png", full_page=True)
            fit = page.evaluate(OVERFLOW)
            if fit["scrollWidth"] > min(fit["innerWidth"], fit["clientWidth"]):
                too_wide.append(f"{path} at {window['width']} px: {fit}")
            if page_name == "overview":
                bars = page.locator("#overview-table .progress-stacked")
                expect(bars.first).to_be_visible()
                for index in range(bars.count()):
                    box = bars.nth(index).bounding_box()
                    if window["width"] == 1280 and box["x"] + box["width"] > fit["innerWidth"]:
                        too_wide.append(f"share bar {index} out of the window at 1280 px: {box}")
                    if box["width"] < 64:
                        too_wide.append(f"share bar {index} squeezed to {box['width']} px at {window['width']} px")
                if name == "phone":  # the counts scroll sideways in their box, under the region names
                    scroll = "box => { box.scrollLeft = 250; return box.scrollLeft; }"
                    assert page.locator("#overview-table .table-responsive").evaluate(scroll) > 0
                    expect(page.get_by_role("link", name="Bilbao", exact=True)).to_be_in_viewport()
                    page.screenshot(path=artifacts / "overview-phone-scrolled.png")
        page.context.close()

        login = browser.new_context(viewport=window).new_page()  # the login page, before logging in
        login.goto(console + "/accounts/login/")
        login.screenshot(path=artifacts / f"login-{name}.png", full_page=True)
        fit = login.evaluate(OVERFLOW)
        if fit["scrollWidth"] > min(fit["innerWidth"], fit["clientWidth"]):
            too_wide.append(f"/accounts/login/ at {window['width']} px: {fit}")
        login.context.close()
    assert not too_wide, "\n".join(too_wide)
    violations = [text for found in watched for text in found]
    assert violations == [], violations  # every page, with htmx, runs under the Content-Security-Policy


def test_it_reaches_every_page_from_the_phone_menu(browser, console, django_user_model, artifacts):
    staff = user_with_role(django_user_model, "stella", "operator", "staff-password")
    staff.is_staff = True
    staff.save()
    page = log_in(browser, console, WINDOWS["phone"], "stella", "staff-password")
    menu = page.get_by_role("button", name="Toggle navigation")
    expect(page.get_by_role("link", name="Conflicts")).to_be_hidden()  # folded away on a phone
    destinations = [
        ("Conflicts", "Conflicts"), ("Runs", "Runs"), ("Schedules", "Schedules"), ("Backups", "Backups"),
        ("Alerts", "Alerts"), ("API tokens", "Your API tokens"), ("Regions", "Regions"),
    ]  # fmt: skip
    for link, heading in destinations:
        menu.click()
        page.get_by_role("link", name=link, exact=True).click()
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    menu.click()
    expect(page.locator("#main-nav")).to_have_class(re.compile(r"\bshow\b"))  # unfolded: the animation is over
    page.screenshot(path=artifacts / "menu-phone.png", full_page=True)
    page.get_by_role("link", name="Admin", exact=True).click()  # staff only
    expect(page.get_by_role("heading", name="Configuration and accounts")).to_be_visible()
    page.screenshot(path=artifacts / "admin-phone.png")
    page.get_by_role("link", name="← GlanceSync console").click()  # and back
    expect(page.get_by_role("heading", name="Regions", exact=True)).to_be_visible()

    page.goto(console + "/")  # the rest is linked from the pages themselves
    page.get_by_role("link", name="Images × regions matrix").click()
    expect(page.get_by_role("heading", name="Images × regions")).to_be_visible()
    page.go_back()
    page.get_by_role("link", name="Preview a sync of every region").click()
    expect(page.get_by_role("heading", name="What a sync would do")).to_be_visible()
    page.go_back()
    page.get_by_role("link", name="partner:Lisbon", exact=True).click()
    expect(page.get_by_role("heading", name="Region partner:Lisbon")).to_be_visible()
    menu.click()
    expect(page.locator("#main-nav")).to_have_class(re.compile(r"\bshow\b"))  # not mid-animation: once a click
    page.get_by_role("button", name="Log out").click()  # on the folding menu did not log out (CI, 2026-12-01)
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    page.context.close()
