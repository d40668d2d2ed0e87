"""manage.py import_clouds_yaml: clouds.yaml entries as targets, filters, --master, idempotence, errors."""

from __future__ import annotations

import io

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from sync import crypto
from sync.models import AuditEntry, Region, Target

pytestmark = pytest.mark.django_db

SOURCE_PASSWORD = "source-Pa55word-not-real"
TARGET_PASSWORD = "target-Pa55word-not-real"


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path, monkeypatch):
    """Keys from a key file in a temporary DATA_DIR (never the repository's var/)."""
    monkeypatch.delenv(crypto.ENV_KEYS, raising=False)
    settings.DATA_DIR = tmp_path / "data"
    return settings.DATA_DIR


def realstack_clouds(source_password=SOURCE_PASSWORD, target_password=TARGET_PASSWORD) -> dict:
    """The shape tests/realstack/lib/write_files.py writes: clouds `source` (2 regions) and `target` (1 region)."""
    clouds = {}
    for site, port, password, regions in (
        ("source", 5001, source_password, ["RegionOne", "RegionTwo"]),
        ("target", 5002, target_password, ["RegionOne"]),
    ):
        clouds[site] = {
            "auth": {
                "auth_url": f"http://127.0.0.1:{port}/v3",
                "username": "admin",
                "password": password,
                "project_name": "admin",
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "regions": regions,
            "identity_api_version": 3,
            "image_api_version": 2,
        }
    return {"clouds": clouds}


def write(tmp_path, data, name="clouds.yaml"):
    path = tmp_path / name
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path.write_text("# Written by tests/realstack/start.sh\n" + text)
    return path


def run(*args) -> str:
    out = io.StringIO()
    call_command("import_clouds_yaml", *map(str, args), stdout=out)
    return out.getvalue()


def state():
    targets = sorted(Target.objects.values_list("name", "auth_url", "user", "project_name", "insecure"))
    regions = sorted(Region.objects.values_list("target__name", "name", "enabled", "position"))
    return targets, regions, AuditEntry.objects.count()


def test_it_imports_every_cloud_of_a_realstack_clouds_yaml(tmp_path):
    output = run(write(tmp_path, realstack_clouds()))
    assert "create target source" in output and "create target target" in output
    assert "create region source:RegionOne" in output and "create region target:RegionOne" in output
    assert "imported, 5 change(s)" in output
    source = Target.objects.get(name="source")
    assert source.auth_url == "http://127.0.0.1:5001/v3"
    assert source.identity_api_version == Target.IdentityVersion.V3
    assert (source.user, source.password, source.project_name) == ("admin", SOURCE_PASSWORD, "admin")
    assert (source.user_domain, source.project_domain) == ("", "")  # "" means Default
    assert (source.region_name, source.cacert, source.insecure, source.clouds_yaml_cloud) == ("", "", False, "")
    assert Target.objects.get(name="target").password == TARGET_PASSWORD
    regions = list(Region.objects.order_by("position").values_list("target__name", "name", "enabled", "position"))
    assert regions == [
        ("source", "RegionOne", True, 0),
        ("source", "RegionTwo", True, 1),
        ("target", "RegionOne", True, 2),
    ]
    assert AuditEntry.objects.count() == 5
    assert all(entry.username == "import_clouds_yaml" for entry in AuditEntry.objects.all())
    policy = source.to_policy()
    assert policy.keystone_url == "http://127.0.0.1:5001/v3" and policy.use_keystone_v3 and policy.cloud_name is None


def test_it_imports_only_the_cloud_filter(tmp_path):
    path = write(tmp_path, realstack_clouds())
    output = run(path, "--cloud", "target")
    assert "create target target" in output and "source" not in output
    assert list(Target.objects.values_list("name", flat=True)) == ["target"]
    run(path, "--cloud", "source", "target")
    assert sorted(Target.objects.values_list("name", flat=True)) == ["source", "target"]


def test_it_imports_a_cloud_as_master(tmp_path):
    path = write(tmp_path, realstack_clouds())
    output = run(path, "--master", "source")
    assert "note: cloud source is imported as the target master" in output
    assert "create target master" in output and "create region RegionTwo" in output
    assert sorted(Target.objects.values_list("name", flat=True)) == ["master", "target"]
    assert Target.objects.get(name="master").password == SOURCE_PASSWORD
    assert [r.fullname for r in Region.objects.order_by("position")] == ["RegionOne", "RegionTwo", "target:RegionOne"]
    # --master with --cloud imports the master entry too.
    Target.objects.all().delete()
    run(path, "--cloud", "target", "--master", "source")
    assert sorted(Target.objects.values_list("name", flat=True)) == ["master", "target"]


def test_it_refuses_two_clouds_for_the_master_target(tmp_path):
    data = realstack_clouds()
    data["clouds"]["master"] = data["clouds"]["target"]
    with pytest.raises(CommandError, match="would both be the target master"):
        run(write(tmp_path, data), "--master", "source")
    assert not Target.objects.exists()


def test_it_is_idempotent(tmp_path):
    path = write(tmp_path, realstack_clouds())
    run(path)
    before = state()
    output = run(path)
    assert "no changes" in output and "create" not in output and "update" not in output
    assert state() == before


def test_it_reports_updates_and_appends_new_regions(tmp_path):
    run(write(tmp_path, realstack_clouds()))
    Region.objects.create(target=Target.objects.create(name="other"), name="Far", position=10)
    data = realstack_clouds(target_password="a-new-one")
    data["clouds"]["target"]["auth"]["auth_url"] = "https://keystone.example.org:5000/v3"
    data["clouds"]["target"]["regions"] = ["RegionOne", {"name": "RegionThree", "values": {}}]
    output = run(write(tmp_path, data))
    assert "update target target (auth_url, password)" in output
    assert "create region target:RegionThree" in output
    assert "a-new-one" not in output
    assert Region.objects.get(name="RegionThree").position == 11  # after every existing region
    assert Target.objects.get(name="target").password == "a-new-one"
    change = AuditEntry.objects.filter(action="change").get()
    assert change.changed_fields == ["auth_url", "password"]
    assert "a-new-one" not in str(list(AuditEntry.objects.values()))


def test_it_keeps_target_options_and_extra_regions(tmp_path):
    target = Target.objects.create(name="target", metadata_set="a, b", clouds_yaml_cloud="target", password="old")
    Region.objects.create(target=target, name="Old", enabled=False, position=0)
    Region.objects.create(target=target, name="RegionOne", enabled=False, position=1)
    output = run(write(tmp_path, realstack_clouds()), "--cloud", "target")
    assert "update target target" in output and "clouds_yaml_cloud" in output
    assert "note: target target: region Old is not in cloud target: kept as it is" in output
    assert "region target:RegionOne is disabled in the database: kept disabled" in output
    target.refresh_from_db()
    assert target.metadata_set == "a, b" and target.clouds_yaml_cloud == ""
    assert not Region.objects.get(name="RegionOne").enabled


def test_it_changes_nothing_in_dry_run(tmp_path):
    output = run(write(tmp_path, realstack_clouds()), "--dry-run")
    assert "would create target source" in output and "would create region source:RegionTwo" in output
    assert "dry run: 5 change(s), nothing saved" in output
    assert not Target.objects.exists() and not Region.objects.exists() and not AuditEntry.objects.exists()


def test_it_stores_the_password_encrypted_and_never_prints_it(tmp_path, data_dir):
    output = run(write(tmp_path, realstack_clouds()))
    assert SOURCE_PASSWORD not in output and TARGET_PASSWORD not in output
    assert (data_dir / crypto.KEY_FILE_NAME).exists()
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT name, password FROM {Target._meta.db_table}")
        rows = dict(cursor.fetchall())
    assert set(rows) == {"source", "target"}
    for raw in rows.values():
        assert raw.startswith("gAAAAA") and "Pa55word" not in raw
    assert crypto.decrypt(rows["source"]) == SOURCE_PASSWORD
    dump = io.StringIO()
    call_command("dumpdata", "sync.target", stdout=dump)
    assert "Pa55word" not in dump.getvalue()


def test_it_keeps_the_stored_password_when_the_file_has_none(tmp_path):
    run(write(tmp_path, realstack_clouds()))
    data = realstack_clouds(source_password="")
    del data["clouds"]["target"]["auth"]["password"]
    output = run(write(tmp_path, data))
    assert "no changes" in output
    assert "note: cloud source: no password in the file, the stored one of target source is kept" in output
    assert Target.objects.get(name="source").password == SOURCE_PASSWORD
    assert Target.objects.get(name="target").password == TARGET_PASSWORD


def test_it_maps_the_other_openstacksdk_settings(tmp_path):
    text = """\
clouds:
  old:
    auth:
      auth_url: https://old.example.org:5000/v2.0
      username: glance
      password: "12345"
      tenant_name: service
    identity_api_version: '2.0'
    region_name: Spain
    regions: [Spain, {name: Madrid}]
    verify: false
    interface: internal
  new:
    auth_type: password
    auth:
      auth_url: https://new.example.org/identity/v3
      username: sync
      password: s3cret-value
      project_name: images
      user_domain_name: Users
      domain_name: Projects
    cacert: /etc/ssl/new-ca.pem
    interface: public
"""
    output = run(write(tmp_path, text))
    assert "note: cloud old: interface internal ignored: GlanceSync uses the public endpoints" in output
    assert "cloud new: interface" not in output
    old = Target.objects.get(name="old")
    assert old.identity_api_version == Target.IdentityVersion.V2
    assert (old.project_name, old.password, old.region_name, old.insecure) == ("service", "12345", "Spain", True)
    assert list(old.regions.order_by("position").values_list("name", flat=True)) == ["Spain", "Madrid"]
    new = Target.objects.get(name="new")
    assert new.identity_api_version == Target.IdentityVersion.V3
    assert (new.user_domain, new.project_domain, new.cacert, new.insecure) == (
        "Users",
        "Projects",
        "/etc/ssl/new-ca.pem",
        False,
    )
    assert not new.regions.exists()


BAD_ENTRIES = [
    ({"auth": {"username": "u", "password": "pw-never-shown", "project_name": "p"}}, "cloud bad: no auth.auth_url"),
    (
        {"auth": {"auth_url": "http://k/v3", "password": "pw-never-shown", "project_id": "0123abcd"}},
        "cloud bad: auth.project_id alone is not enough: GlanceSync needs auth.project_name",
    ),
    (
        {"auth_type": "v3applicationcredential", "auth": {"auth_url": "http://k/v3", "password": "pw-never-shown"}},
        "cloud bad: auth_type v3applicationcredential is not supported",
    ),
    (
        {
            "auth": {"auth_url": "http://k/v3", "password": "pw-never-shown", "project_name": "p"},
            "identity_api_version": 4,
        },
        "cloud bad: identity_api_version 4 is not supported",
    ),
    (
        {"auth": {"auth_url": "http://k/v3", "password": "pw-never-shown", "project_name": "p"}, "regions": ["a:b"]},
        "cloud bad: region a:b: name: a region name has no blanks, commas or colons",
    ),
    ("just a string", "cloud bad: the entry is not a mapping"),
]


@pytest.mark.parametrize("entry, message", BAD_ENTRIES, ids=lambda value: str(value)[:30])
def test_it_refuses_a_bad_entry_and_saves_nothing(tmp_path, entry, message):
    path = write(tmp_path, {"clouds": {**realstack_clouds()["clouds"], "bad": entry}})
    with pytest.raises(CommandError) as error:
        run(path)
    text = str(error.value)
    assert text.startswith(f"nothing imported: {path}: ") and message in text and "\n" not in text
    assert "pw-never-shown" not in text and "Pa55word" not in text
    assert not Target.objects.exists() and not Region.objects.exists() and not AuditEntry.objects.exists()


def test_it_refuses_a_bad_target_name_with_the_model_message(tmp_path):
    data = {"clouds": {"my cloud": realstack_clouds()["clouds"]["source"]}}
    with pytest.raises(CommandError, match=r"cloud my cloud: name: letters, digits"):
        run(write(tmp_path, data))
    assert not Target.objects.exists()


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "file not found"),
        ("clouds:\n  a:\n    auth:\n      password: Pa55word: x\n", r"not valid YAML: .* \(line 4, column \d+\)"),
        ("- a list\n", "no 'clouds' mapping"),
        ("clouds: [a, b]\n", "no 'clouds' mapping"),
        ("clouds: {}\n", "the 'clouds' mapping is empty"),
    ],
    ids=["missing", "not-yaml", "a-list", "clouds-list", "clouds-empty"],
)
def test_it_refuses_an_unreadable_file(tmp_path, text, message):
    run(write(tmp_path, realstack_clouds(), name="good.yaml"))
    before = state()
    path = tmp_path / "bad.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(CommandError, match=message) as error:
        run(path)
    assert str(error.value).startswith(f"{path}: ") and "Pa55word" not in str(error.value)
    assert state() == before


def test_it_refuses_an_unknown_cloud_name(tmp_path):
    path = write(tmp_path, realstack_clouds())
    for args in (("--cloud", "target", "--cloud", "nope"), ("--master", "nope")):
        with pytest.raises(CommandError, match=r"cloud nope is not in the file \(its clouds: source, target\)"):
            run(path, *args)
    assert not Target.objects.exists()


def test_it_imports_glancesyncs_own_transfer_key_and_refuses_a_bad_one(tmp_path):
    data = realstack_clouds()
    data["clouds"]["source"]["glancesync_transfer"] = "glance-download"
    data["clouds"]["target"]["glancesync_transfer"] = "Stream"
    run(write(tmp_path, data), "--master", "source")
    assert dict(Target.objects.values_list("name", "transfer")) == {"master": "glance-download", "target": "stream"}
    del data["clouds"]["target"]["glancesync_transfer"]  # absent: the target keeps its choice
    run(write(tmp_path, data), "--master", "source")
    assert Target.objects.get(name="target").transfer == "stream"
    data["clouds"]["target"]["glancesync_transfer"] = "rsync"
    del data["clouds"]["source"]["glancesync_transfer"]
    with pytest.raises(CommandError, match="glancesync_transfer rsync is not auto, stream or glance-download"):
        run(write(tmp_path, data))
    data["clouds"]["target"]["glancesync_transfer"] = "glance-download"
    with pytest.raises(CommandError, match="cloud target: transfer: not for target target: only the master target"):
        run(write(tmp_path, data))
