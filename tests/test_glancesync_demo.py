"""`manage.py glancesync_demo` and the demo data it copies (sync/demo)."""

import importlib
import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from sync.clouds import cloud_from_url
from sync.demo import DEMO_RATE_MB_S
from sync.engine.backup import read_backup
from sync.engine.config import load_config
from sync.engine.glancesync import GlanceSync
from sync.engine.model import STATUSES
from sync.engine.reporter import RecordingReporter
from sync.models import MasterSettings, Region, Target

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "sync" / "demo"
DEMO_CONFIG = DEMO / "glancesync.conf"
DEMO_FILES = sorted(p.name for p in (DEMO / "cloud").glob("backup_*.csv"))


def demo(*args):
    out = io.StringIO()
    call_command("glancesync_demo", *args, stdout=out)
    return out.getvalue()


def same_as_demo(folder: Path) -> bool:
    names = sorted(p.name for p in folder.iterdir())
    return names == DEMO_FILES and all(
        (folder / name).read_bytes() == (DEMO / "cloud" / name).read_bytes() for name in names
    )


def statuses_by_region(folder: Path) -> dict[str, dict[str, str]]:
    """{region fullname: {image: status}} for every region of every target of the demo."""
    config = load_config(str(DEMO_CONFIG), environ={}, require_credentials=False)
    engine = GlanceSync(config, cloud_from_url(f"files:{folder}"), RecordingReporter())
    regions = [region for target in config.targets for region in engine.get_regions(target)]
    return {region: {s.master.name: s.status for s in engine.region_status(region)} for region in regions}


@pytest.fixture
def copy(tmp_path):
    folder = tmp_path / "demo-cloud"
    demo("--path", str(folder))
    return folder


# --- the command --------------------------------------------------------------------------------------------


def test_it_copies_the_demo_cloud_and_says_what_to_try(tmp_path):
    folder = tmp_path / "some" / "where"
    out = demo("--path", str(folder))
    assert same_as_demo(folder)
    assert f"Demo cloud copied to {folder}" in out
    assert f"--cloud files:{folder} --show-status master: partner:" in out
    assert "glancesync.conf" in out
    assert [p.name for p in folder.parent.iterdir()] == ["where"]  # no scratch folder left behind


def test_it_leaves_an_existing_copy_alone(copy):
    changed = copy / "backup_Malaga.csv"
    changed.write_text("Malaga,local,1,active,10,abc,6f1c2b9e4a7d4c0e8b3a5d9f2e1c7a40,True,{}\r\n")
    out = demo("--path", str(copy))
    assert "already in" in out
    assert "--reset" in out
    assert changed.read_text().startswith("Malaga,local")


def test_it_restores_the_demo_with_reset(copy):
    (copy / "backup_Malaga.csv").write_text("")
    (copy / "backup_partner:Lisbon.csv").unlink()
    (copy / "backup_NewRegion.csv").write_text("")
    out = demo("--path", str(copy), "--reset")
    assert "Removed the old demo cloud" in out
    assert same_as_demo(copy)


def test_it_resets_a_missing_folder_by_copying_it(tmp_path):
    folder = tmp_path / "demo-cloud"
    demo("--path", str(folder), "--reset")
    assert same_as_demo(folder)


def test_it_fills_an_existing_empty_folder(tmp_path):
    demo("--path", str(tmp_path))
    assert same_as_demo(tmp_path)


def test_it_does_not_copy_into_a_folder_of_other_files(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(CommandError, match="holds other files but no backup_"):
        demo("--path", str(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


@pytest.mark.parametrize("intruder", ["notes.txt", "subfolder", "backup_x.csv.bak"])
def test_it_refuses_to_delete_a_folder_with_other_files(copy, intruder):
    if intruder == "subfolder":
        (copy / intruder).mkdir()
    else:
        (copy / intruder).write_text("keep me")
    before = sorted(p.name for p in copy.iterdir())
    with pytest.raises(CommandError, match="refusing to remove it") as error:
        demo("--path", str(copy), "--reset")
    assert intruder in str(error.value)
    assert sorted(p.name for p in copy.iterdir()) == before


def test_it_refuses_to_delete_a_symlinked_backup(copy, tmp_path):
    target = tmp_path / "precious.csv"
    target.write_text("keep me")
    (copy / "backup_Link.csv").symlink_to(target)
    with pytest.raises(CommandError, match="backup_Link.csv"):
        demo("--path", str(copy), "--reset")
    assert target.read_text() == "keep me"


def test_it_refuses_a_path_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("keep me")
    with pytest.raises(CommandError, match="not a folder"):
        demo("--path", str(path))
    with pytest.raises(CommandError, match="not a folder"):
        demo("--path", str(path), "--reset")
    assert path.read_text() == "keep me"


def test_it_defaults_to_the_folder_of_the_files_cloud(settings, tmp_path):
    settings.GLANCESYNC_CLOUD = f"files:{tmp_path / 'cloud'}?latency=0.1"
    out = demo()
    assert same_as_demo(tmp_path / "cloud")
    assert "set GLANCESYNC_CLOUD" not in out


def test_it_defaults_to_the_data_dir_for_another_cloud(settings, tmp_path):
    settings.GLANCESYNC_CLOUD = "openstack"
    settings.DATA_DIR = tmp_path
    out = demo()
    assert same_as_demo(tmp_path / "demo-cloud")
    assert f"set GLANCESYNC_CLOUD=files:{tmp_path / 'demo-cloud'}" in out


def test_it_says_when_the_console_reads_another_folder(settings, tmp_path):
    settings.GLANCESYNC_CLOUD = f"files:{tmp_path / 'console'}"
    out = demo("--path", str(tmp_path / "elsewhere"))
    assert f"set GLANCESYNC_CLOUD=files:{tmp_path / 'elsewhere'}" in out


# --- --console: the demo configuration in the database (scripts/run) ---------------------------------------


@pytest.fixture
def console_folder(settings, tmp_path):
    """The embedded default: SQLite and a files: cloud whose folder the demo is copied into."""
    settings.GLANCESYNC_CLOUD = f"files:{tmp_path / 'demo-cloud'}"
    settings.DATA_DIR = tmp_path / "data"  # the Fernet key file of the demo's passwords
    return tmp_path / "demo-cloud"


def configuration() -> tuple:
    targets = list(Target.objects.order_by("name").values_list("name", "auth_url", "user", "project_name"))
    regions = list(Region.objects.order_by("name").values_list("target__name", "name", "enabled", "position"))
    return targets, regions, list(MasterSettings.objects.values())


@pytest.mark.django_db
def test_it_imports_the_demo_configuration_once_marked_as_the_demo(console_folder):
    out = demo("--console")
    assert "Demo configuration imported into the database" in out and "Demo operator account created" in out
    main = MasterSettings.objects.get()
    assert (main.master_region, main.cloud, main.demo) == (
        "Madrid",
        f"files:{console_folder}?rate={DEMO_RATE_MB_S}",
        True,
    )
    assert sorted(Target.objects.values_list("name", flat=True)) == ["master", "partner"]
    before = configuration()
    out = demo("--console")
    assert "Demo configuration imported" not in out and "account created" not in out
    assert configuration() == before


@pytest.mark.django_db
@pytest.mark.parametrize("made", ["connected", "targets only"])
def test_it_never_imports_the_demo_over_a_configuration_the_user_made(console_folder, made):
    """A cloud connected (master region set, the demo replaced), or targets imported without a master region yet
    (import_clouds_yaml): scripts/run keeps it as it is."""
    target = Target.objects.create(
        name="master", auth_url="https://keystone.example.org/v3", user="me", password="pw", project_name="p"
    )
    Region.objects.create(target=target, name="RegionOne", position=0)
    if made == "connected":
        MasterSettings.objects.create(pk=1, master_region="RegionOne", cloud="openstack", demo=False)
    before = configuration()
    out = demo("--console")
    assert "Demo configuration imported" not in out
    assert configuration() == before
    assert not Target.objects.filter(name="partner").exists()
    assert not MasterSettings.objects.filter(demo=True).exists()


@pytest.mark.django_db
def test_the_migration_marks_a_demo_imported_before_the_flag_existed(console_folder):
    from django.apps import apps

    mark_the_demo = importlib.import_module("sync.migrations.0020_mastersettings_demo").mark_the_demo
    demo("--console")
    MasterSettings.objects.update(demo=False)  # as a database of the previous version holds it
    mark_the_demo(apps, None)
    assert MasterSettings.objects.get().demo
    Target.objects.filter(name="master").update(auth_url="https://keystone.example.org/v3")  # the user's own
    MasterSettings.objects.update(demo=False)
    mark_the_demo(apps, None)
    assert not MasterSettings.objects.get().demo


# --- the demo data ------------------------------------------------------------------------------------------


def test_it_shows_every_status(copy):
    seen = {status for images in statuses_by_region(copy).values() for status in images.values()}
    assert seen == set(STATUSES)


def test_it_shows_every_status_through_the_command_line(copy):
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "glancesync", "--config-file", str(DEMO_CONFIG), "--cloud", f"files:{copy}",
        "--show-status", "master:", "partner:", stdout=out, stderr=err,
    )  # fmt: skip
    rows = [line.split(",") for line in out.getvalue().splitlines()]
    assert {row[0] for row in rows} == set(STATUSES)
    assert {row[1] for row in rows} == {
        "Valencia", "Sevilla", "Bilbao", "Zaragoza", "Malaga", "partner:Lisbon", "partner:Porto",
    }  # fmt: skip
    assert "owned by other tenant" in err.getvalue()
    assert "is not active: queued" in err.getvalue()


def test_it_matches_the_table_of_its_readme(copy):
    statuses = statuses_by_region(copy)
    expected = {
        ("Valencia", "ubuntu-20.04-server-amd64"): "pending_metadata",
        ("Valencia", "ubuntu-22.04-ami"): "ok",
        ("Sevilla", "fedora-40-cloud-base"): "ok_stalled_checksum",
        ("Sevilla", "debian-12-genericcloud-amd64"): "pending_upload",
        ("Sevilla", "ubuntu-24.04-server-amd64"): "pending_upload",
        ("Bilbao", "ubuntu-24.04-server-amd64"): "pending_replace",
        ("Bilbao", "debian-11-genericcloud-amd64"): "pending_rename",
        ("Bilbao", "ubuntu-22.04-ami"): "pending_ami",
        ("Zaragoza", "rocky-9-x86_64"): "error_checksum",
        ("Zaragoza", "postgresql-16-appliance"): "pending_metadata",
        ("Zaragoza", "debian-12-genericcloud-amd64 (20261101)"): "pending_metadata",
        ("Zaragoza", "debian-12-genericcloud-amd64"): "pending_upload",
        ("Sevilla", "centos-stream-9-x86_64"): "pending_metadata",
        ("Bilbao", "octavia-amphora-haproxy-x64"): "pending_metadata",
        ("Valencia", "octavia-amphora-haproxy-x64"): "ok",
        ("partner:Lisbon", "rocky-9-x86_64"): "pending_metadata",
        ("partner:Lisbon", "debian-12-ami"): "error_ami",
        ("partner:Porto", "ubuntu-24.04-server-amd64"): "pending_replace",
    }
    assert {key: statuses[key[0]][key[1]] for key in expected} == expected
    assert set(statuses["Valencia"].values()) == {"ok", "pending_metadata"}
    assert set(statuses["Malaga"].values()) == {"pending_upload"}
    assert len(statuses["Malaga"]) == 22, "the hidden old build of debian-12 is not uploaded"
    assert len(statuses["partner:Lisbon"]) == 12


def test_it_has_a_master_region_with_other_tenant_inactive_obsolete_and_ami_images(copy):
    config = load_config(str(DEMO_CONFIG), environ={}, require_credentials=False)
    session = cloud_from_url(f"files:{copy}").session(config.master)
    images = {image.name: image for image in session.list_images(config.master_region)}
    assert 20 <= len(images) <= 30
    assert any(image.owner != config.master.tenant_id for image in images.values())
    assert any(image.status != "active" for image in images.values())
    assert any(name.endswith("_obsolete") for name in images)
    assert sum("kernel_id" in image.user_properties for image in images.values()) == 2
    assert {image.is_public for image in images.values()} == {True, False}


def test_it_has_credentials_for_both_targets():
    config = load_config(str(DEMO_CONFIG), environ={})  # credentials required: the file has them
    assert set(config.targets) == {"master", "partner"}
    assert all(target.password and target.user for target in config.targets.values())
    assert config.targets["partner"].metadata_condition


def test_it_syncs_to_what_its_readme_says(copy):
    out = io.StringIO()
    call_command(
        "glancesync", "--config-file", str(DEMO_CONFIG), "--cloud", f"files:{copy}", "master:", "partner:",
        stdout=out,
    )  # fmt: skip
    statuses = statuses_by_region(copy)
    left = {(r, i, s) for r, images in statuses.items() for i, s in images.items() if s != "ok"}
    assert left == {
        ("Sevilla", "fedora-40-cloud-base", "ok_stalled_checksum"),
        ("Zaragoza", "rocky-9-x86_64", "error_checksum"),
        ("partner:Lisbon", "debian-12-ami", "error_ami"),
        ("partner:Lisbon", "ubuntu-22.04-ami", "error_ami"),
        ("partner:Porto", "debian-12-ami", "error_ami"),
        ("partner:Porto", "ubuntu-22.04-ami", "error_ami"),
    }
    assert "centos-7-x86_64_obsolete" in (copy / "backup_Valencia.csv").read_text()
    assert "centos-7-x86_64_obsolete" in (copy / "backup_partner:Porto.csv").read_text()
    zaragoza = {image.id: image for image in read_backup(copy / "backup_Zaragoza.csv", "Zaragoza")}
    old_build = zaragoza["bd2b6ba7-77b2-5c15-9f1c-bd08b0cae5cc"]  # the region's debian-12, kept for its servers
    assert (old_build.name, old_build.hidden) == ("debian-12-genericcloud-amd64 (20261101)", True)
    assert "INFO:Zaragoza: Renaming image debian-12-genericcloud-amd64 (bd2b6ba7" in out.getvalue()
    sevilla = {image.name: image for image in read_backup(copy / "backup_Sevilla.csv", "Sevilla")}
    assert sevilla["centos-stream-9-x86_64"].hidden is False, "a hidden copy is the copy: shown like its master"
    bilbao = {image.name: image for image in read_backup(copy / "backup_Bilbao.csv", "Bilbao")}
    assert bilbao["octavia-amphora-haproxy-x64"].tags == {"amphora"}, "Octavia finds its image by tag"


@pytest.mark.django_db
def test_the_console_demo_uploads_at_the_demo_rate_and_its_progress_moves(settings, tmp_path):
    from sync.clouds.base import ImageSource
    from sync.engine.model import Image
    from sync.models import MasterSettings

    settings.GLANCESYNC_CLOUD = f"files:{tmp_path / 'cloud'}"
    out = demo("--console")
    assert "Demo configuration imported" in out
    cloud_url = MasterSettings.load().cloud
    assert cloud_url == f"files:{tmp_path / 'cloud'}?rate={DEMO_RATE_MB_S}"
    session = cloud_from_url(cloud_url).session(load_config(str(DEMO_CONFIG)).targets["master"])
    image = Image(name="big", id="x", region="Madrid", owner="o", checksum="c", size=DEMO_RATE_MB_S * 250_000)
    seen = []
    session.upload_image("Bilbao", image, ImageSource(session, "Madrid", image), lambda done, total: seen.append(done))
    assert len(seen) >= 10 and seen[0] < seen[-1] == image.size  # a quarter of a second, in moving steps
