"""Connect a cloud in a real browser, against the real Keystone + Glance of tests/realstack and a real qcluster:
from an empty database with only a staff account, connect the `source` cloud by hand (a wrong password first),
pick RegionOne as master, save, watch the first refresh fill the overview in, then sync RegionTwo and watch the
run reach done, all without reloading. Screenshots of each step go to the artifacts folder."""

import re
import uuid

import pytest
from django.contrib.auth.models import Permission
from playwright.sync_api import expect

from sync.models import Defaults, ImageState, MasterSettings, RefreshRequest, Target
from tests.browser.conftest import PASSWORD, csp_violations
from tests.cluster import Cluster, wait_for
from tests.conftest import role_group
from tests.integration.test_openstack_sync import create, images_named
from tests.realstack.stack import image_bytes, realstack  # noqa: F401  (realstack: the session fixture)
from tests.web import Web

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def images(realstack):  # noqa: F811
    """Two small public images of our own in the source cloud's RegionOne; removed from both regions after."""
    prefix = f"connect{uuid.uuid4().hex[:8]}-"
    master = realstack.connect("source", "RegionOne")
    for name in ("cirros", "debian"):
        create(master, prefix + name, image_bytes(64 * 1024))
    yield prefix
    for region in ("RegionOne", "RegionTwo", "RegionThree"):
        conn = realstack.connect("source", region)
        for image in images_named(conn, prefix).values():
            conn.image.delete_image(image.id, ignore_missing=True)


@pytest.fixture
def empty_console(transactional_db, static_root, django_user_model, images, tmp_path):
    """An empty database but for one staff account (as scripts/run makes the demo one: operator role and the
    configuration's permissions), and the Defaults' selection narrowed to this test's images: the stack is
    shared, and other tests' images are not ours to copy."""
    user = django_user_model.objects.create_user("stella", password=PASSWORD, is_staff=True)
    user.groups.add(role_group("operator"))
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="sync"))
    Defaults.objects.create(pk=1, metadata_condition=f"image.is_public and image.name.startswith('{images}')")
    cluster = Cluster(tmp_path, "openstack")
    web = Web(tmp_path, "openstack", static_root).start()
    yield web.url, cluster
    web.stop()
    cluster.stop()


@pytest.fixture
def staff_page(browser, empty_console):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    violations = csp_violations(page)
    page.set_default_timeout(30_000)
    page.goto(empty_console[0] + "/")
    page.get_by_label("Username").fill("stella")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    yield page
    context.close()
    assert violations == [], "the page broke its Content-Security-Policy"


def test_a_staff_user_connects_the_real_cloud_and_syncs_a_region(
    staff_page,
    empty_console,
    realstack,  # noqa: F811
    images,
    artifacts,
):
    page, (_, cluster) = staff_page, empty_console
    expect(page.get_by_text("No region has a status yet.")).to_be_visible()
    page.screenshot(path=artifacts / "1-empty-overview.png", full_page=True)

    page.get_by_role("link", name="Connect a cloud").click()
    by_hand = page.get_by_role("region", name="Enter a target by hand")
    by_hand.get_by_label("Keystone URL").fill(realstack.source_auth_url)
    by_hand.get_by_label(re.compile(r"^\s*User\*?\s*$")).fill("admin")  # "*": crispy marks the required fields
    by_hand.get_by_label("Password").fill("Wr0ng-Passw0rd-for-the-test")
    by_hand.get_by_label(re.compile(r"^\s*Project\*?\s*$")).fill("admin")
    page.screenshot(path=artifacts / "2-connect-by-hand.png", full_page=True)
    by_hand.get_by_role("button", name="Test the connection").click()
    expect(page.get_by_role("alert")).to_contain_text(
        "Keystone login: Keystone refused the login (HTTP 401): wrong user name, password or project"
    )
    assert "Wr0ng-Passw0rd" not in page.content()
    assert not Target.objects.exists() and not MasterSettings.objects.exists()  # nothing saved
    page.screenshot(path=artifacts / "3-wrong-password.png", full_page=True)

    by_hand = page.get_by_role("region", name="Enter a target by hand")
    expect(by_hand.get_by_label("Keystone URL")).to_have_value(realstack.source_auth_url)  # kept; not the password
    by_hand.get_by_label("Password").fill(realstack.passwords["source"])
    by_hand.get_by_role("button", name="Test the connection").click()
    expect(page).to_have_url(re.compile(r"/connect/review/$"))
    test = page.get_by_role("region", name="Connection test of master")
    expect(test).to_contain_text("image endpoints in 3 region(s): RegionOne, RegionThree, RegionTwo")
    master = page.get_by_label("Master region")
    expect(master.locator("option")).to_have_text(["RegionOne", "RegionThree", "RegionTwo"])  # the catalog's regions
    master.select_option(label="RegionOne")
    changes = page.get_by_role("region", name="What saving does")
    expect(changes).to_contain_text("create target master")
    expect(page.get_by_label("RegionTwo")).to_be_checked()
    page.screenshot(path=artifacts / "4-review.png", full_page=True)

    page.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/$"))
    page.evaluate("window.stillTheSamePage = true")  # gone if anything reloads the page
    status = page.get_by_role("status").filter(has_text="Refreshing every region")
    expect(status).to_contain_text("asked by stella")
    expect(status).to_contain_text("waiting for a task worker")  # no cluster yet: the request waits for one
    page.screenshot(path=artifacts / "5-refresh-queued.png", full_page=True)

    cluster.start()
    region_two = page.get_by_role("row").filter(has=page.get_by_role("link", name="RegionTwo", exact=True))
    pending_upload = region_two.locator('td[title^="pending_upload: "]')  # the count cell, by its tooltip
    expect(pending_upload).to_have_text("2", timeout=90_000)  # the refresh ran; htmx swapped the table in
    expect(page.get_by_role("link", name="RegionOne", exact=True)).to_be_visible()
    expect(page.get_by_role("status")).to_have_count(0)
    assert page.evaluate("window.stillTheSamePage") is True
    assert RefreshRequest.objects.get().finished_at is not None
    page.screenshot(path=artifacts / "6-refreshed.png", full_page=True)

    # Small images sync in a second: the cluster stops while the run is started, so the page is seen waiting,
    # then following the run to its end.
    cluster.stop()
    page.get_by_role("link", name="RegionTwo", exact=True).click()
    page.get_by_role("button", name="Sync this region").click()
    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
    page.evaluate("window.stillTheSamePage = true")
    run = page.get_by_role("region", name="Region RegionTwo")
    expect(run.get_by_text("queued", exact=True)).to_be_visible()
    expect(run.get_by_role("progressbar", name="Images of RegionTwo")).to_have_attribute("aria-valuenow", "0")
    page.screenshot(path=artifacts / "7-run-queued.png", full_page=True)
    cluster.start()
    expect(run.get_by_text("done", exact=True)).to_be_visible(timeout=90_000)
    expect(run.get_by_role("progressbar", name="Images of RegionTwo")).to_have_attribute("aria-valuenow", "100")
    expect(run).to_contain_text("Uploads 2")
    assert page.evaluate("window.stillTheSamePage") is True
    page.screenshot(path=artifacts / "8-run-done.png", full_page=True)

    copies = images_named(realstack.connect("source", "RegionTwo"), images)
    assert sorted(copies) == [images + "cirros", images + "debian"]
    wait_for(lambda: set(ImageState.objects.filter(region="RegionTwo").values_list("status", flat=True)) == {"ok"})
    page.get_by_role("link", name="RegionTwo", exact=True).click()
    expect(page.get_by_text("ok: 2")).to_be_visible()
    page.screenshot(path=artifacts / "9-region-synced.png", full_page=True)
