"""Configuration models (sync/models.py): inheritance, validation, to_policy and load_db_config."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError

from sync import crypto
from sync.dbconfig import load_db_config
from sync.engine.config import ConfigError
from sync.models import ChecksumDecision, Defaults, MasterSettings, Region, Target, normalise_csv

pytestmark = pytest.mark.django_db
MD5 = "e4acfbc74750180ec2ef5d15d47fbf1b"


@pytest.fixture(autouse=True)
def fernet_key(monkeypatch):
    monkeypatch.setenv(crypto.ENV_KEYS, Fernet.generate_key().decode())


@pytest.fixture
def openstack_cloud():
    MasterSettings.objects.create(master_region="Madrid", cloud="openstack")


def test_csv_normalised_stripped_deduplicated_in_order():
    assert normalise_csv(" b , a,, b ,c ") == "b, a, c"
    target = Target(name="t", metadata_set="nid , type, nid", ignore_regions=" X ,")
    target.full_clean()
    assert target.metadata_set == "nid, type" and target.ignore_regions == "X"


def test_inheritance_target_then_defaults_then_builtin():
    defaults = Defaults.load()
    defaults.metadata_set = "type"
    defaults.only_tenant_images = False
    defaults.save()
    target = Target.objects.create(name="t", list_images_timeout=5)
    assert target.effective("metadata_set") == "type"
    assert target.inherited_from("metadata_set") == "defaults"
    assert target.effective("only_tenant_images") is False
    assert target.effective("list_images_timeout") == 5
    assert target.inherited_from("list_images_timeout") == "target"
    assert target.effective("support_obsolete_images") is True
    assert target.inherited_from("support_obsolete_images") == "built-in"
    target.metadata_set = "nid"
    assert target.effective("metadata_set") == "nid"


def test_defaults_is_a_singleton():
    Defaults.load().save()
    Defaults(forcesyncs="x").save()
    assert Defaults.objects.count() == 1 and Defaults.load().forcesyncs == "x"


def test_bad_condition_refused_with_evaluator_message():
    target = Target(name="t", metadata_condition="__import__('os').system('x')")
    with pytest.raises(ValidationError) as error:
        target.full_clean()
    assert "metadata_condition" in error.value.message_dict
    Target(name="t", metadata_condition="image.size > 10").full_clean()


def test_reserved_or_bad_target_names():
    for name in ("main", "DEFAULT", "a b", "a:b"):
        with pytest.raises(ValidationError):
            Target(name=name).full_clean()


def test_checksum_validation_on_openstack_cloud(openstack_cloud):
    target = Target.objects.create(name="t")
    ChecksumDecision(target=target, checksum=MD5.upper(), action="rename").full_clean()
    ChecksumDecision(target=target, checksum="a" * 128, action="replace").full_clean()
    ChecksumDecision(target=target, checksum="any", action="replace").full_clean()
    for checksum, action in (("ch1", "rename"), ("a" * 31, "replace"), ("any", "dontupdate")):
        with pytest.raises(ValidationError) as error:
            ChecksumDecision(target=target, checksum=checksum, action=action).full_clean()
        assert "checksum" in error.value.message_dict


def test_checksum_loose_on_files_cloud():
    MasterSettings.objects.create(master_region="Madrid", cloud="files:/tmp/x")
    target = Target.objects.create(name="t")
    ChecksumDecision(target=target, checksum="ch1", action="rename").full_clean()
    with pytest.raises(ValidationError):
        ChecksumDecision(target=target, checksum="a b", action="rename").full_clean()
    with pytest.raises(ValidationError):
        ChecksumDecision(target=target, checksum="any", action="dontupdate").full_clean()


def test_checksum_unique_per_target(openstack_cloud):
    target = Target.objects.create(name="t")
    ChecksumDecision.objects.create(target=target, checksum=MD5, action="rename")
    with pytest.raises(ValidationError):
        ChecksumDecision(target=target, checksum=MD5, action="replace").full_clean()


def test_master_settings_validation():
    with pytest.raises(ValidationError):
        MasterSettings(master_region="M", cloud="s3:x").full_clean()
    with pytest.raises(ValidationError):
        MasterSettings(master_region="M", max_children=0).full_clean()


def test_to_policy(openstack_cloud):
    Defaults(obsolete_syncprops="deprecated", support_obsolete_images=False, follow_rotations=False).save()
    target = Target.objects.create(
        name="partner",
        auth_url="http://k:5000/v3",
        user="u",
        password="pw",
        project_name="p",
        metadata_set="type, nid",
        metadata_condition="image.is_public",
        forcesyncs="uuid1",
        tenant_id="tid",
        identity_api_version="2.0",
    )
    ChecksumDecision.objects.create(target=target, checksum="any", action="replace")
    ChecksumDecision.objects.create(target=target, checksum=MD5, action="dontupdate")
    policy = target.to_policy()
    assert policy.name == "partner" and policy.password == "pw" and policy.keystone_url == "http://k:5000/v3"
    assert policy.tenant == "p" and policy.tenant_id == "tid" and policy.use_keystone_v3 is False
    assert policy.metadata_set == {"type", "nid"} and policy.forcesyncs == {"uuid1"}
    assert policy.replace == {"any"} and policy.dontupdate == {MD5} and policy.rename == frozenset()
    assert policy.obsolete_syncprops == {"deprecated"} and policy.support_obsolete_images is False
    assert policy.follow_rotations is False, "inherited from Defaults"
    assert Target(name="x").to_policy(Defaults()).follow_rotations is True, "the built-in default"
    assert policy.only_tenant_images is True and policy.list_images_timeout == 30
    assert policy.user_domain == "Default" and policy.metadata_condition == "image.is_public"
    assert "pw" not in repr(policy)


def test_load_db_config(openstack_cloud):
    master = Target.objects.create(name="master")
    other = Target.objects.create(name="other")
    Region.objects.create(target=master, name="Madrid", position=5)
    Region.objects.create(target=other, name="Lisbon", position=1)
    Region.objects.create(target=master, name="Sevilla", position=2)
    Region.objects.create(target=master, name="Off", position=0, enabled=False)
    config = load_db_config()
    assert config.master_region == "Madrid" and set(config.targets) == {"master", "other"}
    assert config.preferable_order == ["other:Lisbon", "Sevilla", "Madrid"]
    assert config.max_children == 1 and config.images_dir is None


def test_load_db_config_without_master_target_or_region():
    with pytest.raises(ConfigError, match="no master region"):
        load_db_config()
    MasterSettings.objects.create(master_region="M")
    assert "master" in load_db_config().targets


def test_region_unique_per_target_and_name_rules():
    target = Target.objects.create(name="t")
    Region.objects.create(target=target, name="R")
    with pytest.raises(ValidationError):
        Region(target=target, name="R").full_clean()
    with pytest.raises(ValidationError):
        Region(target=target, name="a:b").full_clean()
