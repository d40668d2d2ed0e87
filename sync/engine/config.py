"""Reader of the legacy `glancesync.conf` (spec §1): INI file + environment fallbacks + `--config` overrides.

Error messages name the source and the section/key, fit on one line and never show a password (configparser's
own messages quote raw values, so they are replaced rather than passed on).
"""

from __future__ import annotations

import base64
import binascii
import configparser
import os
from collections.abc import Iterable, Mapping

from sync.engine.condition import ConditionError, compile_condition
from sync.engine.model import GLANCE_DOWNLOAD, TRANSFERS, GlanceSyncError, SyncConfig, TargetPolicy

DEFAULT_PATH = "/etc/glancesync.conf"  # the original's code path (its README said /etc/fiware.d/...)
ENV_CONFIG = "GLANCESYNC_CONFIG"
BUILTIN_DEFAULTS = {
    "support_obsolete_images": "True",
    "only_tenant_images": "True",
    "list_images_timeout": "30",
    "follow_rotations": "True",
    "transfer": "auto",
}
NOT_TARGETS = ("main", "DEFAULT", "DEFAULTS")  # DEFAULTS: skipped by the original too (a typo it kept)
CREDENTIAL_KEYS = ("user", "password", "keystone_url", "tenant")
CSV_SET_KEYS = (
    "forcesyncs",
    "replace",
    "rename",
    "dontupdate",
    "ignore_regions",
    "metadata_set",
    "obsolete_syncprops",
)
# Master credential fallbacks, with the original's messages (tenant also accepts the newer OS_PROJECT_NAME).
MASTER_ENV = {
    "user": (
        ("OS_USERNAME",),
        "A username for master target must be provided in configuration or OS_USERNAME",
    ),
    "password": (
        ("OS_PASSWORD",),
        "A password for master target must be provided in configuration or OS_PASSWORD",
    ),
    "keystone_url": (
        ("OS_AUTH_URL",),
        "A keystone url for master target must be provided in configuration or OS_AUTH_URL",
    ),
    "tenant": (
        ("OS_TENANT_NAME", "OS_PROJECT_NAME"),
        "A tenant name for master target must be provided in configuration or OS_TENANT_NAME",
    ),
}
CREDENTIAL_MISSING = (
    "A credential parameter is mandatory for each target (or the set: user, password, tenant, keystone_url)"
)


class ConfigError(GlanceSyncError):
    """The configuration cannot be used; the message says where and why (never a secret)."""


class _Reader:
    """Typed, error-translating access to one parsed configuration."""

    def __init__(self, parser: configparser.ConfigParser, source: str) -> None:
        self.parser = parser
        self.source = source

    def error(self, section: str, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: [{section}] {key}: {problem}")

    def has(self, section: str, key: str) -> bool:
        return self.parser.has_option(section, key)

    def get(self, section: str, key: str, default: str | None = None) -> str | None:
        """The interpolated value, or `default` when the key is absent (also from [DEFAULT])."""
        if not self.parser.has_option(section, key):
            return default
        try:
            return self.parser.get(section, key)
        except configparser.InterpolationMissingOptionError as error:
            raise self.error(section, key, f"'%({error.reference})s' refers to an undefined option") from None
        except configparser.InterpolationDepthError:
            raise self.error(section, key, "'%(...)s' references nest too deeply") from None
        except configparser.Error:
            raise self.error(section, key, "bad '%' in the value (write %% for a literal %)") from None

    def get_set(self, section: str, key: str) -> frozenset[str]:
        return frozenset(self.get_list(section, key))

    def get_list(self, section: str, key: str) -> list[str]:
        """CSV value: stripped items; an empty value is an empty list (the literal None stays "None")."""
        value = (self.get(section, key) or "").strip()
        return [item.strip() for item in value.split(",")] if value else []

    def get_bool(self, section: str, key: str, default: str = "") -> bool:
        value = self.get(section, key, default)
        state = configparser.ConfigParser.BOOLEAN_STATES.get(value.strip().lower())
        if state is None:
            raise self.error(section, key, f"not a boolean: {value!r} (use true/false, yes/no, on/off, 1/0)")
        return state

    def get_int(self, section: str, key: str, default: int, minimum: int = 1) -> int:
        value = self.get(section, key)
        if value is None:
            return default
        try:
            number = int(value.strip())
        except ValueError:
            raise self.error(section, key, f"not an integer: {value!r}") from None
        if number < minimum:
            raise self.error(section, key, f"must be at least {minimum}, not {number}")
        return number


# --- sources -------------------------------------------------------------------------------------------------


def _new_parser() -> configparser.ConfigParser:
    # strict=False: duplicated sections/keys are merged (last wins) as Python 2's SafeConfigParser did.
    return configparser.ConfigParser(
        defaults=BUILTIN_DEFAULTS, interpolation=configparser.BasicInterpolation(), strict=False
    )


def _choose_source(path: str | None, environ: Mapping[str, str]) -> tuple[str | None, str]:
    """(file to read or None, where its name came from). An explicit path beats GLANCESYNC_CONFIG."""
    if path:
        return path, ""
    if environ.get(ENV_CONFIG):
        return environ[ENV_CONFIG], f" (from {ENV_CONFIG})"
    if os.path.exists(DEFAULT_PATH):
        return DEFAULT_PATH, ""
    return None, ""


def _read(parser: configparser.ConfigParser, text: str, source: str) -> None:
    try:
        parser.read_string(text, source=source)
    except configparser.MissingSectionHeaderError as error:
        raise ConfigError(f"{source}: line {error.lineno}: a [section] header must come first") from None
    except configparser.ParsingError as error:
        lineno = error.errors[0][0] if error.errors else "?"
        raise ConfigError(f"{source}: line {lineno}: not a 'key = value' line nor a [section]") from None
    except configparser.Error as error:  # e.g. a key before any section in odd inputs
        raise ConfigError(f"{source}: cannot parse the file ({type(error).__name__})") from None


def _read_file(parser: configparser.ConfigParser, path: str, origin: str) -> None:
    label = path + origin
    if not os.path.exists(path):
        raise ConfigError(f"config file {label} not found")
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except UnicodeDecodeError:
        raise ConfigError(f"config file {label} is not valid UTF-8") from None
    except OSError as error:
        raise ConfigError(f"config file {label} cannot be read: {error.strerror}") from None
    _read(parser, text, path)


# --- overrides (spec §1.6) -----------------------------------------------------------------------------------


def parse_override_items(items: Iterable[str]) -> list[tuple[str, str]]:
    """`key=value` items of `--config`, split as the original did: exactly one '=', key stripped, value not."""
    pairs = []
    for item in items:
        parts = item.split("=")
        if len(parts) != 2 or not parts[0].strip():
            shown = parts[0] + ("=…" if len(parts) > 1 else "")  # the value may be a password: not shown
            raise ConfigError(f"config options must have the format key=value: {shown}")
        pairs.append((parts[0].strip(), parts[1]))
    return pairs


def _apply_overrides(parser: configparser.ConfigParser, overrides: Iterable[tuple[str, str]]) -> None:
    """`section.key` goes to that (existing) section; any other key (no dot, or several) to [DEFAULT]."""
    for key, value in overrides:
        parts = key.split(".")
        section, option = (parts[0], parts[1]) if len(parts) == 2 else (parser.default_section, key)
        if section != parser.default_section and not parser.has_section(section):
            raise ConfigError(f"--config {key}: no section [{section}] in the configuration")
        try:
            parser.set(section, option, value)
        except ValueError:  # BasicInterpolation refuses a lone '%' when the value is set
            raise ConfigError(f"--config {key}: bad '%' in the value (write %% for a literal %)") from None


# --- interpretation ------------------------------------------------------------------------------------------


def _decode_password(reader: _Reader, section: str, encoded: str) -> str:
    # Lenient like Python 2's decodestring, which gave raw bytes: missing padding is tolerated, and bytes that
    # are not UTF-8 (the seed README's sample password) are kept one character per byte.
    try:
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        raise reader.error(section, "credential", "the password (2nd field) is not valid base64") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _credential(reader: _Reader, section: str) -> dict[str, str] | None:
    """user/password/keystone_url/tenant from the 4-key set (which wins) or from `credential`; None if neither."""
    if all(reader.has(section, key) for key in CREDENTIAL_KEYS):
        return {key: (reader.get(section, key) or "").strip() for key in CREDENTIAL_KEYS}
    if not reader.has(section, "credential"):
        return None
    parts = (reader.get(section, "credential") or "").strip().split(",")
    if len(parts) < 4:
        raise reader.error(
            section,
            "credential",
            f"needs 4 comma-separated fields (user, base64 password, keystone_url, tenant), found {len(parts)}",
        )
    # The original's sample files end lines with a backslash, which INI does not join: drop it from the fields.
    user, encoded, url, tenant = (part.replace("\\\n", "").strip() for part in parts[:4])
    return {
        "user": user,
        "password": _decode_password(reader, section, encoded),
        "keystone_url": url,
        "tenant": tenant,
    }


def _master_credential_from_env(environ: Mapping[str, str], require: bool, source: str) -> dict[str, str]:
    """Each missing field from OS_*; the file's values only ever count as a complete set (as the original)."""
    found: dict[str, str] = {}
    for key, (names, message) in MASTER_ENV.items():
        value = next((environ[name] for name in names if environ.get(name)), None)
        if value is not None:
            found[key] = value
        elif require:
            raise ConfigError(f"{source}: {message} must be defined")
    return found


def _condition(reader: _Reader, section: str) -> str | None:
    """Blank means absent (lets a section cancel a [DEFAULT] condition); otherwise validated now."""
    value = reader.get(section, "metadata_condition")
    if value is None or not value.strip():
        return None
    try:
        compile_condition(value, section)
    except ConditionError as error:
        raise ConfigError(f"{reader.source}: {error}") from None
    return value


def _target(reader: _Reader, section: str, environ: Mapping[str, str], require_credentials: bool) -> TargetPolicy:
    credential = _credential(reader, section)
    cloud_name = (reader.get(section, "cloud") or "").strip() or None
    if credential is None and cloud_name is None:  # a clouds.yaml entry carries its own auth
        if section == "master":
            credential = _master_credential_from_env(environ, require_credentials, reader.source)
        elif require_credentials:
            raise ConfigError(f"{reader.source}: [{section}] {CREDENTIAL_MISSING}")
    sets = {key: reader.get_set(section, key) for key in CSV_SET_KEYS}
    return TargetPolicy(
        name=section,
        **(credential or {}),
        tenant_id=(reader.get(section, "tenant_id") or "").strip() or None,
        use_keystone_v3=_keystone_v3(reader, section, (credential or {}).get("keystone_url")),
        user_domain=(reader.get(section, "user_domain") or "").strip() or "Default",
        project_domain=(reader.get(section, "project_domain") or "").strip() or "Default",
        cloud_name=cloud_name,
        cacert=(reader.get(section, "cacert") or "").strip() or None,
        insecure=reader.get_bool(section, "insecure", "false"),
        metadata_condition=_condition(reader, section),
        only_tenant_images=reader.get_bool(section, "only_tenant_images"),
        support_obsolete_images=reader.get_bool(section, "support_obsolete_images"),
        list_images_timeout=reader.get_int(section, "list_images_timeout", 30),
        follow_rotations=reader.get_bool(section, "follow_rotations"),
        transfer=_transfer(reader, section),
        **sets,
    )


def _transfer(reader: _Reader, section: str) -> str:
    value = (reader.get(section, "transfer") or "auto").strip().lower()
    if value not in TRANSFERS:
        raise reader.error(section, "transfer", f"{value!r} is not auto, stream or glance-download")
    if value == GLANCE_DOWNLOAD and section != "master":  # also when inherited from [DEFAULT]: set it in [master]
        raise reader.error(section, "transfer", f"glance-download: {GLANCE_DOWNLOAD_MASTER_ONLY}")
    return value


GLANCE_DOWNLOAD_MASTER_ONLY = (
    "only the master target's regions (behind the master region's Keystone) can import images from the master "
    "region with glance-download; use auto or stream"
)


def _keystone_v3(reader: _Reader, section: str, keystone_url: str | None) -> bool:
    """v3 unless the target says v2.0: `use_keystone_v3 = False`, or a keystone_url ending in /v2.0 without
    the option. The original defaulted to v2.0, which no Keystone has served since Queens (2018)."""
    if reader.has(section, "use_keystone_v3"):
        return reader.get_bool(section, "use_keystone_v3")
    return not (keystone_url or "").rstrip("/").endswith("/v2.0")


def _master_region(reader: _Reader, environ: Mapping[str, str]) -> str:
    region = (reader.get("main", "master_region") or "").strip() or environ.get("OS_REGION_NAME", "").strip()
    if not region:
        raise ConfigError(f"{reader.source}: a master region must be set in [main] master_region or OS_REGION_NAME")
    return region


def _interpret(reader: _Reader, environ: Mapping[str, str], require_credentials: bool) -> SyncConfig:
    parser = reader.parser
    # Missing [main]/[master] behave as empty sections: they still inherit [DEFAULT] (and the built-in
    # defaults), so an env-only master target gets every default field (fixes the original's bug 9.1-5).
    for section in ("main", "master"):
        if not parser.has_section(section):
            parser.add_section(section)
    targets = {
        section: _target(reader, section, environ, require_credentials)
        for section in parser.sections()
        if section not in NOT_TARGETS
    }
    images_dir = (reader.get("main", "images_dir") or "").strip() or None
    return SyncConfig(
        master_region=_master_region(reader, environ),
        targets=targets,
        preferable_order=reader.get_list("main", "preferable_order"),
        max_children=reader.get_int("main", "max_children", 1),
        images_dir=images_dir,
    )


def load_config(
    path: str | None = None,
    overrides: Iterable[tuple[str, str]] = (),
    environ: Mapping[str, str] = os.environ,
    *,
    text: str | None = None,
    text_source: str = "<text>",
    require_credentials: bool = True,
) -> SyncConfig:
    """Read the engine configuration (spec §1).

    Source: `text` > `path` > $GLANCESYNC_CONFIG > /etc/glancesync.conf if present > environment only.
    `overrides` are (key, value) pairs from `parse_override_items`. With `require_credentials=False` (e.g. the
    file-backed cloud) targets without credentials are accepted and keep user/password/... as None.
    """
    parser = _new_parser()
    if text is not None:
        source = text_source
        _read(parser, text, source)
    else:
        file_path, origin = _choose_source(path, environ)
        source = file_path or "environment"
        if file_path is not None:
            _read_file(parser, file_path, origin)
    _apply_overrides(parser, overrides)
    return _interpret(_Reader(parser, source), environ, require_credentials)
