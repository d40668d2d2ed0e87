"""The file cloud: the original's mock facade (spec §6.3), persisted in a folder of backup CSVs."""

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from sync.clouds import cloud_from_url
from sync.clouds.base import ImageSource
from sync.clouds.files import FileCloud, FileTargetSession
from sync.engine.backup import BackupFormatError
from sync.engine.model import GlanceSyncError, Image, TargetPolicy

VALLADOLID = (
    "Valladolid,image01,001,active,1073741824,ch01,tenant1id,True,\"{'type': 'ngimages', 'nid': 1}\"\r\n"
    "Valladolid,image02,002,active,1073741834,ch02,tenant1id,True,{'type': 'baseimage'}\r\n"
)
BURGOS = (
    "Burgos,image01,101,active,1073741824,ch01,tenant1id,True,\"{'type': 'ngimages', 'nid': 1}\"\r\n"
    "Burgos,image02,102,active,1073741834,ch02,tenant1id,False,{'type': 'baseimage'}\r\n"
    "Burgos,image03,103,active,1073741844,ch03,,True,{}\r\n"
)
MADRID = "other:Madrid,image02,202,active,1073741834,ch02,tenant2id,True,{'type': 'baseimage'}\r\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    files = {
        "backup_Valladolid.csv": VALLADOLID,
        "backup_Burgos.csv": BURGOS,
        "backup_other:Madrid.csv": MADRID,
        "backup_other:Region2.csv": "",
        "backup_target2:Sevilla.csv": "",
        "config": "[main]\nmaster_region = Valladolid\n",
        "notes.csv": "not a region\r\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_bytes(text.encode())
    return tmp_path


def session(folder: Path, target: str = "master", **kw) -> FileTargetSession:
    tenant = kw.pop("tenant", "tenant1" if target == "master" else "tenant2")
    return FileCloud(folder).session(TargetPolicy(name=target, tenant=tenant, **kw))


def master_image(name: str = "image04", **kw) -> Image:
    fields = dict(id="004", region="Valladolid", owner="tenant1id", checksum="ch04", size=1073741854)
    return Image(name=name, **{**fields, **kw})


def upload(s: FileTargetSession, region: str, image: Image, progress=None) -> str:
    return s.upload_image(region, image, ImageSource(s, "Valladolid", image), progress)


def file_text(folder: Path, key: str) -> str:
    return (folder / f"backup_{key}.csv").read_bytes().decode()


# --- regions and tenants -------------------------------------------------------------------------------


def test_master_regions_are_the_keys_without_a_target(folder):
    assert session(folder).region_names() == ["Burgos", "Valladolid"]


def test_other_targets_see_their_regions_by_bare_name(folder):
    assert session(folder, "other").region_names() == ["Madrid", "Region2"]
    assert session(folder, "target2").region_names() == ["Sevilla"]
    assert session(folder, "nobody").region_names() == []


def test_the_cloud_lists_every_region_key(folder):
    keys = ["Burgos", "Valladolid", "other:Madrid", "other:Region2", "target2:Sevilla"]
    assert FileCloud(folder).region_keys() == keys


def test_tenant_id_is_the_configured_one_else_the_tenant_name_plus_id(folder):
    assert session(folder).tenant_id() == "tenant1id"
    assert session(folder, tenant_id="abc123").tenant_id() == "abc123"
    assert session(folder, tenant=None).tenant_id() == "id"


# --- listing -------------------------------------------------------------------------------------------


def test_it_lists_a_region_in_file_order_with_fullnames_from_column_0(folder):
    images = session(folder).list_images("Burgos")
    assert [i.id for i in images] == ["101", "102", "103"]
    assert images[0] == Image(
        "image01",
        "101",
        "Burgos",
        "tenant1id",
        True,
        "ch01",
        1073741824,
        "active",
        {"type": "ngimages", "nid": 1},
    )
    assert images[2].owner is None
    (madrid,) = session(folder, "other").list_images("Madrid")
    assert madrid.region == "other:Madrid"


def test_an_empty_file_is_an_empty_region(folder):
    assert session(folder, "other").list_images("Region2") == []


def test_listings_are_copies_independent_from_the_store(folder):
    s = session(folder)
    first = s.list_images("Burgos")[0]
    first.name = "changed"
    with pytest.raises(TypeError):  # properties read from a file may be shared with other images: read-only
        first.user_properties["nid"] = 99
    first.user_properties = first.user_properties | {"nid": 99}
    again = s.list_images("Burgos")[0]
    assert (again.name, again.user_properties) == ("image01", {"type": "ngimages", "nid": 1})


def test_an_unknown_region_is_an_error_naming_region_and_folder(folder):
    with pytest.raises(GlanceSyncError) as error:
        session(folder, "other").list_images("Lima")
    assert str(error.value) == f"other:Lima: Error retrieving image list. Cause: no such region in {folder}"


def test_regions_load_lazily_so_a_bad_file_only_fails_its_own_region(folder):
    (folder / "backup_Broken.csv").write_bytes(b"Broken,a,1,active,abc,c,o,True,{}\r\n")
    s = session(folder)
    assert len(s.list_images("Burgos")) == 3
    with pytest.raises(BackupFormatError) as error:
        s.list_images("Broken")
    assert str(error.value) == f"{folder / 'backup_Broken.csv'} line 1: size 'abc' is not an integer"


def test_duplicated_ids_in_a_file_are_refused_rather_than_lost_on_write_back(folder):
    (folder / "backup_Burgos.csv").write_bytes((BURGOS + BURGOS.splitlines(True)[0]).encode())
    with pytest.raises(BackupFormatError, match="image id '101' appears more than once"):
        session(folder).list_images("Burgos")


def test_it_reads_no_image_data(folder):
    s = session(folder)
    assert list(s.read_image_data("Burgos", s.list_images("Burgos")[0])) == []


# --- uploads -------------------------------------------------------------------------------------------


def test_uploads_get_the_smallest_free_n_dollar_name_id(folder):
    s = session(folder)
    assert upload(s, "Burgos", master_image()) == "1$image04"
    assert upload(s, "Burgos", master_image()) == "2$image04"
    assert upload(s, "Burgos", master_image("image05")) == "1$image05"
    s.delete_image("Burgos", "1$image04")
    assert upload(s, "Burgos", master_image()) == "1$image04"


def test_an_upload_stores_the_master_data_with_the_region_owner_and_fullname(folder):
    s = session(folder, "other")
    image = master_image(is_public=False, status="active", user_properties={"type": "baseimage"})
    image_id = upload(s, "Madrid", image)
    stored = s.list_images("Madrid")[-1]
    expected = Image(
        "image04",
        image_id,
        "other:Madrid",
        "tenant2id",
        False,
        "ch04",
        1073741854,
        "active",
        {"type": "baseimage"},
    )
    assert stored == expected
    image.user_properties["type"] = "changed"
    assert s.list_images("Madrid")[-1].user_properties == {"type": "baseimage"}


def test_uploaded_images_are_owned_by_the_configured_tenant_id_when_set(folder):
    s = session(folder, tenant_id="0123456789abcdef")
    upload(s, "Burgos", master_image())
    assert s.list_images("Burgos")[-1].owner == "0123456789abcdef"


def test_an_upload_creates_a_missing_region_and_its_file(folder):
    s = session(folder, "other")
    assert upload(s, "Lima", master_image()) == "1$image04"
    assert s.region_names() == ["Lima", "Madrid", "Region2"]
    assert (
        file_text(folder, "other:Lima") == "other:Lima,image04,1$image04,active,1073741854,ch04,tenant2id,True,{}\r\n"
    )


def test_an_upload_reports_progress_once_and_appends_to_the_file(folder):
    calls = []
    upload(session(folder), "Burgos", master_image(), lambda done, total: calls.append((done, total)))
    assert calls == [(1073741854, 1073741854)]
    assert file_text(folder, "Burgos") == BURGOS + (
        "Burgos,image04,1$image04,active,1073741854,ch04,tenant1id,True,{}\r\n"
    )


# --- updates and deletes -------------------------------------------------------------------------------


def test_an_update_changes_only_name_visibility_and_properties(folder):
    s = session(folder)
    image = s.list_images("Burgos")[1]
    changes = dict(name="image02.old", is_public=True, visibility="public", user_properties={"type": "x", "nid": 3})
    for field, value in dict(owner="someone", status="queued", size=1, checksum="other", **changes).items():
        setattr(image, field, value)
    s.update_image("Burgos", image)
    image.user_properties["nid"] = 4
    stored = s.list_images("Burgos")[1]
    assert stored == Image(
        "image02.old",
        "102",
        "Burgos",
        "tenant1id",
        True,
        "ch02",
        1073741834,
        "active",
        {"type": "x", "nid": 3},
    )


def test_an_update_of_an_unknown_image_or_region_is_an_error(folder):
    s = session(folder)
    with pytest.raises(GlanceSyncError, match=r"^Burgos: Error updating image image09\. Cause: no image with id 999$"):
        s.update_image("Burgos", master_image("image09", id="999"))
    with pytest.raises(GlanceSyncError, match=r"^Lima: Error updating image\. Cause: no such region in "):
        s.update_image("Lima", master_image())


def test_delete_returns_whether_the_image_existed(folder):
    s = session(folder, "other")
    assert s.delete_image("Madrid", "202") is True
    assert s.delete_image("Madrid", "202") is False
    assert s.delete_image("Lima", "202") is False
    assert s.list_images("Madrid") == []
    assert file_text(folder, "other:Madrid") == ""


def test_every_change_is_written_back_for_the_next_run(folder):
    s = session(folder)
    burgos = s.list_images("Burgos")
    burgos[0].user_properties = {"type": "ngimages", "nid": 2}
    s.update_image("Burgos", burgos[0])
    s.delete_image("Burgos", "102")
    upload(s, "Burgos", master_image())
    expected = s.list_images("Burgos")

    assert session(folder).list_images("Burgos") == expected
    assert [i.id for i in expected] == ["101", "103", "1$image04"]
    assert file_text(folder, "Burgos").splitlines(True)[0] == (
        "Burgos,image01,101,active,1073741824,ch01,tenant1id,True,\"{'type': 'ngimages', 'nid': 2}\"\r\n"
    )


def test_writes_leave_no_temporary_files_and_keep_the_file_mode(folder):
    path = folder / "backup_Burgos.csv"
    path.chmod(0o640)
    session(folder).delete_image("Burgos", "101")
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


def test_an_untouched_region_file_is_not_rewritten(folder):
    before = (folder / "backup_Valladolid.csv").stat().st_mtime_ns
    s = session(folder)
    s.list_images("Valladolid")
    upload(s, "Burgos", master_image())
    assert (folder / "backup_Valladolid.csv").stat().st_mtime_ns == before


def test_the_scenario_fixtures_load_and_write_back_unchanged(tmp_path):
    initial = Path("/work/shared/scenarios/alreadysync/initial")
    if not initial.is_dir():
        pytest.skip("no shared scenarios")
    shutil.copytree(initial, tmp_path / "cloud")
    s = session(tmp_path / "cloud")
    image = s.list_images("Burgos")[0]
    s.update_image("Burgos", image)
    assert (tmp_path / "cloud/backup_Burgos.csv").read_bytes() == (initial / "backup_Burgos.csv").read_bytes()


# --- latency and concurrency ---------------------------------------------------------------------------


def test_latency_is_slept_per_change_and_overlaps_between_regions(folder):
    cloud = FileCloud(folder, latency=0.2)
    s = cloud.session(TargetPolicy(name="master", tenant="tenant1"))
    start = time.monotonic()
    regions = ("Burgos", "Valladolid", "Lima")
    threads = [threading.Thread(target=upload, args=(s, r, master_image())) for r in regions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 0.2 <= time.monotonic() - start < 0.5, "one after the other would take 0.6 s"
    assert [i.id for i in s.list_images("Burgos")][-1] == "1$image04"


def test_a_rate_makes_an_upload_take_its_size_over_the_rate_with_moving_progress(folder):
    cloud = FileCloud(folder, rate=20)  # 20 MB/s
    s = cloud.session(TargetPolicy(name="master", tenant="tenant1"))
    seen: list[tuple[int, int]] = []
    start = time.monotonic()
    upload(s, "Burgos", master_image(size=10_000_000), progress=lambda done, total: seen.append((done, total)))
    assert 0.5 <= time.monotonic() - start < 0.9, "10 MB at 20 MB/s takes 0.5 s"
    assert len(seen) == 10 and seen[0] == (1_000_000, 10_000_000) and seen[-1] == (10_000_000, 10_000_000)
    assert [i.status for i in s.list_images("Burgos")][-1] == "active"


def test_concurrent_uploads_to_one_region_get_distinct_ids(folder):
    s = session(folder)
    ids: list[str] = []
    threads = [threading.Thread(target=lambda: ids.append(upload(s, "Burgos", master_image()))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ids) == sorted(f"{n}$image04" for n in range(1, 9))
    assert len(session(folder).list_images("Burgos")) == 3 + 8


# --- cloud_from_url ------------------------------------------------------------------------------------


def test_cloud_from_url_opens_a_file_cloud(folder):
    cloud = cloud_from_url(f"files:{folder}")
    assert isinstance(cloud, FileCloud)
    assert (cloud.directory, cloud.latency) == (str(folder), 0.0)


def test_cloud_from_url_opens_the_openstack_driver():
    from sync.clouds.openstack import OpenStackCloud

    cloud = cloud_from_url("openstack", images_dir="/srv/images")
    assert isinstance(cloud, OpenStackCloud) and cloud.images_dir == "/srv/images"


def test_cloud_from_url_reads_the_latency_and_the_rate(folder):
    cloud = cloud_from_url(f"files:{folder}?latency=0.25&rate=200")
    assert (cloud.latency, cloud.rate) == (0.25, 200)
    assert cloud_from_url(f"files:{folder}").rate is None


def test_cloud_from_url_expands_the_home_folder(folder, monkeypatch):
    monkeypatch.setenv("HOME", str(folder.parent))
    assert cloud_from_url(f"files:~/{folder.name}").directory == os.path.join(str(folder.parent), folder.name)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3:bucket", "unknown cloud 's3:bucket': use files:DIR or openstack"),
        ("files:", "unknown cloud 'files:': use files:DIR or openstack"),
        (
            "files:{folder}?latency=-1",
            "cloud 'files:{folder}?latency=-1': bad latency '-1': use a number of seconds >= 0",
        ),
        (
            "files:{folder}?latency=abc",
            "cloud 'files:{folder}?latency=abc': bad latency 'abc': use a number of seconds >= 0",
        ),
        (
            "files:{folder}?latency=nan",
            "cloud 'files:{folder}?latency=nan': bad latency 'nan': use a number of seconds >= 0",
        ),
        (
            "files:{folder}?speed=1",
            "cloud 'files:{folder}?speed=1': unknown option 'speed' (only latency=SECONDS, rate=MEGABYTES_PER_SECOND)",
        ),
        (
            "files:{folder}?rate=0",
            "cloud 'files:{folder}?rate=0': bad rate '0': use a number of megabytes per second > 0",
        ),
        ("files:{folder}/missing", "{folder}/missing: no such folder for the file cloud"),
    ],
)
def test_cloud_from_url_errors(folder, url, message):
    with pytest.raises(GlanceSyncError) as error:
        cloud_from_url(url.format(folder=folder))
    assert str(error.value) == message.format(folder=folder)
