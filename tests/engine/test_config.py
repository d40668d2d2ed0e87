"""The legacy glancesync.conf reader (spec §1)."""

from __future__ import annotations

import base64
import glob
from pathlib import Path

import pytest

from sync.engine import config as config_module
from sync.engine.condition import compile_condition
from sync.engine.config import ConfigError, load_config, parse_override_items
from sync.engine.model import GlanceSyncError, Image, SyncConfig

SECRET = "S3cr3t-Zebra-Passw0rd"
SECRET_B64 = base64.b64encode(SECRET.encode()).decode()
FAKE_B64 = "ZmFrZXBhc3N3b3JkLG9mY291cnNl"  # "fakepassword,ofcourse", as in the original's tests
ENV = {"OS_REGION_NAME": "Valladolid", "OS_USERNAME": "user", "OS_PASSWORD": "password"}
ENV |= {"OS_TENANT_NAME": "tenant", "OS_AUTH_URL": "url"}

# The original's test configuration (tests/unit/test_glancesync_config.py), comments trimmed. As there, the
# backslash-newlines below are Python line joins: the parser sees single lines (files keep the backslash).
ORIGINAL = """
[main]
master_region = Spain
preferable_order = Trento, Lannion, Waterford, Berlin, Prague
max_children = 1

[DEFAULT]
# To undefine "parameter1" put "parameter1="
forcesyncs = d93462dc-e7c7-4716-ab64-3cbc109b201f,\
  3471db65-a449-41d5-9090-b8889ee404cb
metadata_condition = image.is_public and \
  ('nid' in image.user_properties or 'type' in image.user_properties)
metadata_set = nid , type, sdc_aware, nid_version
only_tenant_images = True

[master]
user= user1
password = fakepassword,ofcourse
tenant = tenant1
keystone_url = http://server:4730/v2.0
#credential = user1,\
# ZmFrZXBhc3N3b3JkLG9mY291cnNl,\
# http://server:4730/v2.0,tenant1
only_tenant_images = False

list_images_timeout = 20
use_keystone_v3 = True

[experimental]
credential = user2,\
  ZmFrZXBhc3N3b3JkLG9mY291cnNl,\
  http://server2:4730/v2.0,tenant2
ignore_regions = Spain
metadata_condition=
# A hack useful in mock mode
tenant_id = tenant2_id
support_obsolete_images = False
"""

# Inline copy of the scenario configuration `config1` (alreadysync / emptyregions).
CONFIG1 = """[main]
master_region = Valladolid

[master]
credential = user,ZmFrZXBhc3N3b3JkLG9mY291cnNl,\\
  http://server:4730/v2.0,tenant1
metadata_set = nid, type
[other]
credential = user2,ZmFrZXBhc3N3b3JkLG9mY291cnNl,\\
  http://server2:4730/v2.0,tenant2
ignore_region = Region2
metadata_set = type
metadata_condition = image.is_public and\\
 'type' in image.user_properties and image.user_properties['type']\\
  == 'baseimage'
"""

MINIMAL = """[main]
master_region = {region}

[master]
credential = user,ZmFrZXBhc3N3b3JkLG9mY291cnNl,http://server:4730/v2.0,tenant1
"""

SCENARIO_CONFIGS = sorted(glob.glob("/work/shared/scenarios/*/config"))


@pytest.fixture(autouse=True)
def no_etc_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read the machine's /etc/glancesync.conf."""
    monkeypatch.setattr(config_module, "DEFAULT_PATH", str(tmp_path / "absent-etc-glancesync.conf"))


def load(text: str, environ: dict[str, str] | None = None, **kwargs: object) -> SyncConfig:
    return load_config(text=text, environ=environ or {}, **kwargs)  # type: ignore[arg-type]


def error_of(text: str, environ: dict[str, str] | None = None, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load(text, environ, **kwargs)
    message = str(caught.value)
    assert SECRET not in message and SECRET_B64 not in message
    assert "\n" not in message and "Traceback" not in message
    return message


# --- the original's configuration -----------------------------------------------------------------------------


def test_it_reads_every_field_of_the_original_test_configuration() -> None:
    config = load(ORIGINAL)
    master, experimental = config.targets["master"], config.targets["experimental"]
    assert set(config.targets) == {"master", "experimental"}
    assert config.master_region == "Spain"
    assert config.max_children == 1
    assert config.preferable_order == ["Trento", "Lannion", "Waterford", "Berlin", "Prague"]
    assert config.images_dir is None
    forcesyncs = {"d93462dc-e7c7-4716-ab64-3cbc109b201f", "3471db65-a449-41d5-9090-b8889ee404cb"}
    assert master.forcesyncs == forcesyncs == experimental.forcesyncs
    assert master.replace == master.rename == master.dontupdate == master.ignore_regions == frozenset()
    assert master.metadata_set == {"nid", "type", "sdc_aware", "nid_version"} == experimental.metadata_set
    assert master.metadata_condition == (
        "image.is_public and   ('nid' in image.user_properties or 'type' in image.user_properties)"
    )
    assert (master.user, master.password) == ("user1", "fakepassword,ofcourse")
    assert (master.keystone_url, master.tenant) == ("http://server:4730/v2.0", "tenant1")
    assert master.only_tenant_images is False and experimental.only_tenant_images is True
    assert experimental.metadata_condition is None  # blank value cancels the [DEFAULT] condition
    assert (experimental.user, experimental.password) == ("user2", "fakepassword,ofcourse")
    assert experimental.keystone_url == "http://server2:4730/v2.0"
    assert experimental.tenant == "tenant2"
    assert experimental.tenant_id == "tenant2_id" and master.tenant_id is None
    assert master.support_obsolete_images is True and experimental.support_obsolete_images is False
    assert experimental.ignore_regions == {"Spain"}
    assert master.list_images_timeout == 20 and experimental.list_images_timeout == 30
    assert master.use_keystone_v3 is True and experimental.use_keystone_v3 is False


def test_it_reads_config1_with_its_backslash_continuations() -> None:
    config = load(CONFIG1)
    master, other = config.targets["master"], config.targets["other"]
    assert config.master_region == "Valladolid"
    assert (master.user, master.password, master.tenant) == ("user", "fakepassword,ofcourse", "tenant1")
    # a trailing backslash is no INI marker; the original kept it in the url, which no Keystone accepts
    assert master.keystone_url == "http://server:4730/v2.0"
    assert (other.user, other.tenant, other.metadata_set) == ("user2", "tenant2", frozenset({"type"}))
    assert other.ignore_regions == frozenset()  # `ignore_region` (sic) is not an option
    condition = compile_condition(other.metadata_condition or "", "other")
    base = Image(name="b", id="1", region="Valladolid", user_properties={"type": "baseimage"})
    assert condition(base, other.metadata_set) is True
    assert condition(Image(name="n", id="2", region="Valladolid"), other.metadata_set) is False


@pytest.mark.skipif(not SCENARIO_CONFIGS, reason="no shared scenario folder")
@pytest.mark.parametrize("path", SCENARIO_CONFIGS)
def test_it_reads_every_scenario_config(path: str) -> None:
    config = load_config(path, environ={})
    assert config.master_region == "Valladolid"
    assert config.targets["master"].password == "fakepassword,ofcourse"
    assert all(target.user for target in config.targets.values())


# --- [DEFAULT], built-in defaults and value parsing -----------------------------------------------------------


def test_default_section_reaches_every_section_including_main() -> None:
    text = f"""[DEFAULT]
master_region = Burgos
max_children = 3
images_dir = /data/images
metadata_set = nid
credential = user,{SECRET_B64},http://k:5000/v3,tenant

[main]
[master]
[other]
metadata_set = type
"""
    config = load(text)
    assert (config.master_region, config.max_children, config.images_dir) == ("Burgos", 3, "/data/images")
    assert config.targets["master"].metadata_set == {"nid"}
    assert config.targets["other"].metadata_set == {"type"}
    assert config.targets["other"].password == SECRET  # a [DEFAULT] credential satisfies every target


def test_missing_main_section_still_sees_default() -> None:
    config = load("[DEFAULT]\nmaster_region = Soria\n[master]\n", ENV)
    assert config.master_region == "Soria"


def test_builtin_defaults_apply_and_default_section_overrides_them() -> None:
    config = load(MINIMAL.format(region="R"))
    master = config.targets["master"]
    assert (master.use_keystone_v3, master.support_obsolete_images) == (False, True)
    assert (master.only_tenant_images, master.list_images_timeout) == (True, 30)
    assert (master.user_domain, master.project_domain, master.cloud_name) == ("Default", "Default", None)
    config = load("[DEFAULT]\nonly_tenant_images = no\n" + MINIMAL.format(region="R"))
    assert config.targets["master"].only_tenant_images is False


def test_a_condition_may_continue_on_indented_lines_without_backslash() -> None:
    text = MINIMAL.format(region="R") + "metadata_condition = image.is_public and\n  'nid' in image.user_properties\n"
    master = load(text).targets["master"]
    assert master.metadata_condition == "image.is_public and\n'nid' in image.user_properties"
    image = Image(name="a", id="1", region="R", user_properties={"nid": "1"})
    assert compile_condition(master.metadata_condition, "master")(image, frozenset()) is True


def test_none_literals_stay_strings() -> None:
    text = "[main]\nmaster_region = None\npreferable_order = None\n" + MINIMAL.split("\n", 3)[3]
    text += "forcesyncs = None\nignore_regions = None\n"
    config = load(text)
    assert config.master_region == "None"
    assert config.preferable_order == ["None"]
    assert config.targets["master"].forcesyncs == {"None"}
    assert config.targets["master"].ignore_regions == {"None"}


def test_csv_values_are_stripped_and_empty_values_are_empty() -> None:
    text = MINIMAL.format(region="R") + "replace = any,  ch1 ,\n  ch2\nrename =\nobsolete_syncprops = a, b\n"
    master = load(text).targets["master"]
    assert master.replace == {"any", "ch1", "ch2"}
    assert master.rename == frozenset()
    assert master.obsolete_syncprops == {"a", "b"}


@pytest.mark.parametrize(
    ("url", "option", "expected"),
    [
        ("http://k:5000/v3", "", True),
        ("http://k:5000/", "", True),  # the original's default was v2.0: no Keystone serves it any more
        ("http://k:5000/v2.0", "", False),  # the URL says so
        ("http://k:5000/v2.0/", "", False),
        ("http://k:5000/v3", "use_keystone_v3 = False\n", False),  # the option wins
        ("http://k:5000/v2.0", "use_keystone_v3 = True\n", True),
    ],
)
def test_keystone_v3_is_the_default_unless_the_target_says_v2(url: str, option: str, expected: bool) -> None:
    config = load(
        f"[main]\nmaster_region = R\n[master]\nuser = u\npassword = p\nkeystone_url = {url}\ntenant = t\n{option}"
    )
    assert config.targets["master"].use_keystone_v3 is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("yes", True), ("On", True), ("1", True), ("TRUE", True), ("off", False), ("0", False)],
)
def test_booleans_accept_the_ini_spellings(value: str, expected: bool) -> None:
    config = load(MINIMAL.format(region="R") + f"use_keystone_v3 = {value}\n")
    assert config.targets["master"].use_keystone_v3 is expected


def test_a_bad_boolean_names_section_key_and_value() -> None:
    message = error_of(MINIMAL.format(region="R") + "only_tenant_images = maybe\n")
    assert message.startswith("<text>: [master] only_tenant_images: not a boolean: 'maybe'")


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("list_images_timeout = soon", "[master] list_images_timeout: not an integer: 'soon'"),
        ("list_images_timeout = 0", "[master] list_images_timeout: must be at least 1"),
    ],
)
def test_bad_integers_are_reported(line: str, fragment: str) -> None:
    assert fragment in error_of(MINIMAL.format(region="R") + line + "\n")


def test_max_children_must_be_positive() -> None:
    text = MINIMAL.format(region="R").replace("[master]", "max_children = 0\n[master]")
    assert "[main] max_children: must be at least 1, not 0" in error_of(text)


def test_a_lone_percent_is_an_error_naming_the_key_and_double_percent_works() -> None:
    message = error_of(MINIMAL.format(region="R") + "metadata_condition = image.size % 2 == 0\n")
    assert message.startswith("<text>: [master] metadata_condition: bad '%'")
    config = load(MINIMAL.format(region="R") + "metadata_condition = image.size %% 2 == 0\n")
    assert config.targets["master"].metadata_condition == "image.size % 2 == 0"


def test_a_percent_in_a_password_is_reported_without_the_password() -> None:
    text = MINIMAL.format(region="R") + f"[other]\nuser = u\npassword = {SECRET}%\nkeystone_url = k\ntenant = t\n"
    assert "[other] password: bad '%'" in error_of(text)


def test_an_invalid_condition_names_the_file_and_the_target() -> None:
    text = MINIMAL.format(region="R") + "[other]\ncredential = u,YQ==,k,t\nmetadata_condition = image.__class__\n"
    message = error_of(text)
    assert message == "<text>: target other: metadata_condition refused: '__class__' is not allowed"


def test_option_names_are_case_insensitive_and_defaults_section_is_skipped() -> None:
    text = MINIMAL.format(region="R") + "Metadata_Set = NID\n[DEFAULTS]\nforcesyncs = 1\n"
    config = load(text)
    assert set(config.targets) == {"master"}
    assert config.targets["master"].metadata_set == {"NID"}


def test_domains_and_cloud_name_are_read() -> None:
    text = MINIMAL.format(region="R") + "user_domain = d1\nproject_domain = d2\ncloud = mycloud\n"
    master = load(text).targets["master"]
    assert (master.user_domain, master.project_domain, master.cloud_name) == ("d1", "d2", "mycloud")


def test_a_clouds_yaml_entry_replaces_the_credential() -> None:
    text = "[main]\nmaster_region = R\n[master]\ncloud = source\n[other]\ncloud = target\n"
    config = load(text)  # no OS_* variables and no credential: the clouds.yaml entries carry the auth
    assert (config.master.cloud_name, config.targets["other"].cloud_name) == ("source", "target")
    assert config.targets["other"].user is None


def test_tls_options_are_read() -> None:
    master = load(MINIMAL.format(region="R") + "cacert = /etc/ssl/ca.pem\n").targets["master"]
    assert (master.cacert, master.insecure) == ("/etc/ssl/ca.pem", False)
    assert load(MINIMAL.format(region="R") + "insecure = yes\n").targets["master"].insecure is True
    with pytest.raises(ConfigError, match="insecure"):
        load(MINIMAL.format(region="R") + "insecure = maybe\n")


def test_duplicated_keys_and_sections_are_merged_like_python2() -> None:
    text = MINIMAL.format(region="R") + "metadata_set = a\nmetadata_set = b\n[master]\nforcesyncs = x\n"
    master = load(text).targets["master"]
    assert (master.metadata_set, master.forcesyncs) == ({"b"}, {"x"})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("master_region = R\n", "<text>: line 1: a [section] header must come first"),
        ("[main]\nmaster_region = R\n" + f"this line has no equals {SECRET}\n", "<text>: line 3: not a"),
    ],
)
def test_syntax_errors_give_the_line_and_not_its_text(text: str, fragment: str) -> None:
    assert fragment in error_of(text)


# --- credentials ---


def test_credential_fields_are_stripped_and_password_is_base64_decoded() -> None:
    text = MINIMAL.format(region="R") + f"[other]\ncredential =  u2 , {SECRET_B64} ,  http://k2/v3 , t2 , extra\n"
    other = load(text).targets["other"]
    assert (other.user, other.password, other.keystone_url, other.tenant) == (
        "u2",
        SECRET,
        "http://k2/v3",
        "t2",
    )
    assert SECRET not in repr(other)


def test_the_four_key_set_takes_precedence_over_credential() -> None:
    text = MINIMAL.format(region="R") + (
        f"[other]\ncredential = c,{FAKE_B64},http://c,ct\nuser = u\npassword = {SECRET}\nkeystone_url = k\ntenant = t\n"
    )
    other = load(text).targets["other"]
    assert (other.user, other.password, other.keystone_url, other.tenant) == ("u", SECRET, "k", "t")


def test_a_credential_with_too_few_fields_names_the_section() -> None:
    message = error_of(MINIMAL.format(region="R") + f"[other]\ncredential = u,{SECRET_B64},http://k\n")
    assert message == (
        "<text>: [other] credential: needs 4 comma-separated fields "
        "(user, base64 password, keystone_url, tenant), found 3"
    )


def test_a_bad_base64_password_is_not_shown() -> None:
    bad = SECRET + "AB"  # not decodable even with padding added: 4n+1 base64 characters (the "-" is dropped)
    text = MINIMAL.format(region="R") + f"[other]\ncredential = u,{bad},http://k,t\n"
    with pytest.raises(ConfigError) as caught:
        load(text)
    assert str(caught.value) == "<text>: [other] credential: the password (2nd field) is not valid base64"
    assert bad not in str(caught.value)


def test_a_target_without_credential_is_refused_with_the_original_message() -> None:
    message = error_of(MINIMAL.format(region="R") + "[other]\nuser = u\n")
    assert message == (
        "<text>: [other] A credential parameter is mandatory for each target "
        "(or the set: user, password, tenant, keystone_url)"
    )


def test_without_required_credentials_targets_may_have_none() -> None:
    config = load("[main]\nmaster_region = R\n[master]\n[other]\n", require_credentials=False)
    assert all(t.user is None and t.password is None for t in config.targets.values())


# --- environment fallbacks ---


def test_without_any_file_the_master_comes_from_the_environment_with_full_defaults() -> None:
    config = load_config(environ=ENV)
    assert config.master_region == "Valladolid"
    assert (config.max_children, config.preferable_order, config.images_dir) == (1, [], None)
    master = config.targets["master"]
    assert list(config.targets) == ["master"]
    assert (master.user, master.password, master.keystone_url, master.tenant) == (
        "user",
        "password",
        "url",
        "tenant",
    )
    assert master.replace == master.rename == master.dontupdate == master.forcesyncs == frozenset()
    assert master.ignore_regions == master.metadata_set == master.obsolete_syncprops == frozenset()
    assert (master.only_tenant_images, master.support_obsolete_images) == (True, True)
    assert (master.list_images_timeout, master.use_keystone_v3, master.metadata_condition) == (
        30,
        True,
        None,
    )


def test_an_incomplete_master_set_is_ignored_in_favour_of_the_environment() -> None:
    text = "[main]\nmaster_region = Spain2\n[DEFAULT]\nonly_tenant_images = False\n[master]\nuser = fileuser\n"
    config = load(text, ENV)
    master = config.targets["master"]
    assert config.master_region == "Spain2"
    assert (master.user, master.password, master.tenant) == ("user", "password", "tenant")
    assert master.only_tenant_images is False


def test_os_project_name_is_accepted_for_the_tenant() -> None:
    environ = {k: v for k, v in ENV.items() if k != "OS_TENANT_NAME"} | {"OS_PROJECT_NAME": "proj"}
    assert load_config(environ=environ).targets["master"].tenant == "proj"


@pytest.mark.parametrize(
    ("missing", "fragment"),
    [
        ("OS_USERNAME", "A username for master target must be provided in configuration or OS_USERNAME"),
        ("OS_PASSWORD", "A password for master target must be provided in configuration or OS_PASSWORD"),
        ("OS_AUTH_URL", "A keystone url for master target must be provided in configuration or OS_AUTH_URL"),
        (
            "OS_TENANT_NAME",
            "A tenant name for master target must be provided in configuration or OS_TENANT_NAME",
        ),
    ],
)
def test_a_missing_master_credential_is_an_error(missing: str, fragment: str) -> None:
    environ = {k: v for k, v in ENV.items() if k != missing} | {"OS_PASSWORD_X": SECRET}
    with pytest.raises(ConfigError) as caught:
        load_config(environ=environ)
    assert fragment in str(caught.value)


def test_a_master_without_credentials_is_allowed_when_not_required() -> None:
    config = load_config(environ={"OS_REGION_NAME": "R"}, require_credentials=False)
    assert config.targets["master"].user is None and config.targets["master"].password is None


def test_the_master_region_falls_back_to_os_region_name_and_is_required() -> None:
    assert load("[master]\n", ENV).master_region == "Valladolid"
    environ = {k: v for k, v in ENV.items() if k != "OS_REGION_NAME"}
    message = error_of("[main]\n[master]\n", environ)
    assert message == "<text>: a master region must be set in [main] master_region or OS_REGION_NAME"


# --- overrides ---


def test_override_items_are_split_like_the_original() -> None:
    assert parse_override_items([" master.user =otheruser", "a= b "]) == [
        ("master.user", "otheruser"),
        ("a", " b "),
    ]


@pytest.mark.parametrize("item", ["novalue", f"master.password={SECRET}=x", "=x"])
def test_bad_override_items_are_refused_without_their_value(item: str) -> None:
    with pytest.raises(ConfigError, match="config options must have the format key=value: ") as caught:
        parse_override_items([item])
    assert SECRET not in str(caught.value)


def test_overrides_go_to_a_section_or_to_default() -> None:
    overrides = parse_override_items(["master.user=otheruser", "only_tenant_images=False", "a.b.c=1"])
    config = load(ORIGINAL, overrides=overrides)
    assert config.targets["master"].user == "otheruser"
    assert config.targets["experimental"].only_tenant_images is False
    assert config.targets["master"].only_tenant_images is False  # the file's own value
    config = load(ORIGINAL, overrides=[("images_dir", "/srv/images"), ("master_region", "Other")])
    assert config.images_dir == "/srv/images"
    assert config.master_region == "Spain"  # section values in the file win over [DEFAULT]


def test_an_override_of_a_missing_section_is_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ=ENV, overrides=[("main.master_region", "X")])
    assert str(caught.value) == "--config main.master_region: no section [main] in the configuration"


def test_an_override_with_a_lone_percent_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^--config master.password: bad '%'") as caught:
        load(ORIGINAL, overrides=[("master.password", SECRET + "%")])
    assert SECRET not in str(caught.value)


# --- sources ---


def write(tmp_path: Path, name: str, region: str) -> str:
    path = tmp_path / name
    path.write_text(MINIMAL.format(region=region))
    return str(path)


def test_source_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = write(tmp_path, "explicit.conf", "region_file")
    from_env = write(tmp_path, "env.conf", "region_environment")
    monkeypatch.setattr(config_module, "DEFAULT_PATH", write(tmp_path, "etc.conf", "region_etcfile"))
    environ = {"GLANCESYNC_CONFIG": from_env}
    text = MINIMAL.format(region="region_stream")
    assert load_config(explicit, environ=environ, text=text).master_region == "region_stream"
    assert load_config(explicit, environ=environ).master_region == "region_file"  # decision: path beats env
    assert load_config(environ=environ).master_region == "region_environment"
    assert load_config(environ={}).master_region == "region_etcfile"


def test_an_explicit_path_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.conf")
    with pytest.raises(ConfigError) as caught:
        load_config(missing, environ=ENV)
    assert str(caught.value) == f"config file {missing} not found"


def test_a_glancesync_config_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.conf")
    with pytest.raises(ConfigError, match="not found"):
        load_config(environ=ENV | {"GLANCESYNC_CONFIG": missing})


def test_errors_in_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.conf"
    path.write_text(MINIMAL.format(region="R") + "use_keystone_v3 = perhaps\n")
    with pytest.raises(ConfigError, match=rf"^{path}: \[master\] use_keystone_v3: not a boolean"):
        load_config(str(path), environ={})


def test_config_error_is_a_glancesync_error() -> None:
    assert issubclass(ConfigError, GlanceSyncError)


def test_rotations_are_followed_unless_a_section_or_default_turns_them_off() -> None:
    text = f"""[main]
master_region = Valladolid
[master]
credential = user,{SECRET_B64},http://k:5000/v3,tenant1
[other]
credential = user,{SECRET_B64},http://k:5000/v3,tenant2
follow_rotations = false
"""
    config = load(text)
    assert config.targets["master"].follow_rotations is True
    assert config.targets["other"].follow_rotations is False
    config = load("[DEFAULT]\nfollow_rotations = off\n" + text)
    assert config.targets["master"].follow_rotations is False
