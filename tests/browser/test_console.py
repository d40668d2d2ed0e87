"""The console in a real browser: log in, overview, conflicts, a sync watched live, all without reloading."""

import re
import zipfile

import pytest
from playwright.sync_api import expect

from tests.conftest import user_with_role

pytestmark = pytest.mark.browser


def test_an_operator_resolves_a_conflict_and_watches_a_sync(page, artifacts):
    expect(page.get_by_role("heading", name="Regions")).to_be_visible()
    expect(page.get_by_role("link", name="Bilbao", exact=True)).to_be_visible()
    page.screenshot(path=artifacts / "overview.png", full_page=True)

    page.get_by_role("link", name="Conflicts").click()
    first = page.locator("section.card").filter(has=page.get_by_role("button", name="Rename old & replace")).first
    image = first.locator("tbody td").first.inner_text()
    first.get_by_role("button", name="Rename old & replace").click()  # hx-confirm, accepted by the fixture
    decided = page.locator("section.card").filter(has_text=image).filter(has_text="Decided: rename")
    expect(decided.first).to_be_visible()
    expect(decided.first.get_by_text("pending_rename").first).to_be_visible()
    page.screenshot(path=artifacts / "conflicts.png", full_page=True)

    page.get_by_role("link", name="Regions").click()
    page.get_by_role("link", name="Bilbao", exact=True).click()
    page.get_by_role("button", name="Sync this region").click()
    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
    page.evaluate("window.stillTheSamePage = true")  # gone if anything reloads the page
    region = page.get_by_role("region", name="Region Bilbao")
    expect(region.get_by_text("done", exact=True)).to_be_visible(timeout=60_000)
    expect(region.get_by_role("progressbar", name="Images of Bilbao")).to_have_attribute("aria-valuenow", "100")
    assert page.evaluate("window.stillTheSamePage") is True
    page.screenshot(path=artifacts / "run.png", full_page=True)

    page.get_by_role("link", name="Bilbao", exact=True).click()
    expect(page.get_by_role("cell", name="pending_upload")).to_have_count(0)
    page.screenshot(path=artifacts / "region.png", full_page=True)


def test_a_viewer_sees_no_buttons_on_a_phone(browser, console, django_user_model, artifacts):
    user_with_role(django_user_model, "vera", "viewer", "viewer-password")
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(console + "/regions/Bilbao/")
    page.get_by_label("Username").fill("vera")
    page.get_by_label("Password").fill("viewer-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Region Bilbao")).to_be_visible()
    expect(page.get_by_role("button", name="Sync this region")).to_have_count(0)
    page.screenshot(path=artifacts / "region-phone.png", full_page=True)
    context.close()


def test_an_operator_previews_a_sync_and_downloads_a_backup(page, artifacts):
    page.get_by_role("link", name="Preview a sync of every region").click()
    plan = page.get_by_role("region", name="Plan for partner:Lisbon")
    expect(plan.get_by_text("Uploads: 6, 5.4 GB")).to_be_visible()
    expect(plan.get_by_role("cell", name="os_version")).to_have_count(0)  # a fleet's images load on demand
    plan.get_by_role("link", name="Show the images").click()  # htmx loads them into the card
    expect(plan.get_by_role("cell", name="os_version")).to_be_visible()
    expect(plan.get_by_text("fedora-40-cloud-base (379.1 MB)")).to_be_visible()
    assert page.url.endswith("/preview/")  # in place, not a page load
    page.screenshot(path=artifacts / "preview.png", full_page=True)

    page.get_by_role("link", name="Backups").click()
    page.get_by_label("Bilbao").check()
    page.get_by_role("button", name="Make a backup").click()
    download_link = page.get_by_role("link", name="Download all (zip)")
    expect(download_link).to_be_visible(timeout=30_000)  # the list polls until the cluster has written it
    with page.expect_download() as download_info:
        download_link.click()
    path = download_info.value.path()
    with zipfile.ZipFile(path) as zipped:
        files = {name.split("/")[-1]: zipped.read(name) for name in zipped.namelist()}
    assert sorted(files) == ["backup_Bilbao.csv", "backup_Madrid.csv"]
    assert files["backup_Bilbao.csv"].startswith(b"Bilbao,")  # the original's backup format
    page.screenshot(path=artifacts / "backups.png", full_page=True)


def test_an_operator_makes_an_api_token_uses_it_and_revokes_it(page, console, artifacts):
    page.get_by_role("link", name="API tokens").click()
    page.get_by_label("Name").fill("release pipeline")
    page.get_by_role("button", name="Make a token").click()
    token = page.locator("#new-token").inner_text().strip()
    assert token.startswith("gs_")
    page.screenshot(path=artifacts / "token.png", full_page=True)
    api = page.context.request
    assert api.get(console + "/api/v1/regions", headers={"Authorization": f"Bearer {token}"}).status == 200

    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("revoked", exact=True)).to_be_visible()
    expect(page.locator("#new-token")).to_have_count(0)  # never shown again
    assert api.get(console + "/api/v1/regions", headers={"Authorization": f"Bearer {token}"}).status == 401


def test_an_operator_sees_a_rotation_planned_and_followed(page, console, artifacts):
    page.goto(console + "/regions/Zaragoza/")
    old = page.get_by_role("row").filter(has_text="debian-12-genericcloud-amd64 (20261101)")
    rename = "rename the copy debian-12-genericcloud-amd64 → debian-12-genericcloud-amd64 (20261101), hide it"
    expect(old.get_by_text(rename)).to_be_visible()
    expect(old.get_by_text("hidden", exact=True)).to_be_visible()  # the master image is hidden
    page.screenshot(path=artifacts / "region-rotation.png", full_page=True)

    page.get_by_role("button", name="Sync this region").click()
    region = page.get_by_role("region", name="Region Zaragoza")
    expect(region.get_by_text("done", exact=True)).to_be_visible(timeout=60_000)
    expect(region.locator("pre")).to_contain_text("Renaming image debian-12-genericcloud-amd64 (bd2b6ba7")  # the log
    page.get_by_role("link", name="Zaragoza", exact=True).click()
    old = page.get_by_role("row").filter(has_text="debian-12-genericcloud-amd64 (20261101)")
    expect(old.get_by_text("ok", exact=True)).to_be_visible()
    expect(page.get_by_role("cell", name="error_checksum")).to_have_count(1)  # rocky-9 by hand: a real conflict
    page.screenshot(path=artifacts / "region-rotated.png", full_page=True)


def test_an_operator_refreshes_the_statuses_and_sees_the_new_counts_without_reloading(
    page, console, demo_cloud, artifacts
):
    bilbao = demo_cloud / "backup_Bilbao.csv"
    original = bilbao.read_bytes()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name="Bilbao", exact=True))
    ok_cell = row.locator('td[title^="ok: "]')  # each count's tooltip names its status
    expect(ok_cell).to_have_text("9")
    bilbao.write_bytes(b"".join(line for line in original.splitlines(True) if b"cirros-0.6.2-x86_64" not in line))

    page.evaluate("window.stillTheSamePage = true")  # gone if anything reloads the page
    page.get_by_role("button", name="Refresh now").click()
    expect(page.get_by_role("status")).to_contain_text("Refreshing every region… asked by otto at")
    page.screenshot(path=artifacts / "overview-refreshing.png", full_page=True)
    expect(ok_cell).to_have_text("8", timeout=60_000)  # the cluster ran the refresh; htmx swapped the table
    expect(page.get_by_role("status")).to_have_count(0)
    assert page.evaluate("window.stillTheSamePage") is True
    page.screenshot(path=artifacts / "overview-refreshed.png", full_page=True)

    page.get_by_role("link", name="Bilbao", exact=True).click()
    expect(page.get_by_text("ok: 8")).to_be_visible()
    bilbao.write_bytes(original)  # the copy is back
    page.evaluate("window.stillTheSamePage = true")
    page.get_by_role("button", name="Refresh now").click()
    expect(page.get_by_role("status")).to_contain_text("Refreshing Bilbao…")
    expect(page.get_by_text("ok: 9")).to_be_visible(timeout=60_000)
    cirros = page.get_by_role("row").filter(has_text="cirros-0.6.2-x86_64")
    expect(cirros.get_by_text("ok", exact=True)).to_be_visible()
    expect(page.get_by_role("status")).to_have_count(0)
    assert page.evaluate("window.stillTheSamePage") is True
    page.screenshot(path=artifacts / "region-refreshed.png", full_page=True)
