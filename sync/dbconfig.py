"""Build the engine's SyncConfig from the configuration stored in the database (issue #4)."""

from __future__ import annotations

import base64

from django.db import DatabaseError

from sync.engine.config import ConfigError, load_config
from sync.engine.model import SyncConfig, TargetPolicy
from sync.models import Defaults, MasterSettings, Region, Target


def database_configured() -> bool:
    """True once a master region is set in the database (then it, not a legacy file, is the configuration)."""
    try:
        return MasterSettings.objects.exclude(master_region="").exists()
    except DatabaseError:  # not migrated yet: the CLI and the console still work from files and the environment
        return False


def load_db_config_with(overrides: list[tuple[str, str]], require_credentials: bool) -> SyncConfig:
    """The database configuration with `--config` overrides applied by the original's rules: it goes through
    its legacy-file rendering (in memory only; never written or shown), so un-namespaced keys act as [DEFAULT]
    and section.key sets one section, exactly as with a file."""
    text = render(load_db_config(), include_passwords=True)
    return load_config(text=text, text_source="database", overrides=overrides, require_credentials=require_credentials)


def load_db_config() -> SyncConfig:
    """The whole configuration: every target (a `master` one always exists, as with a file), the master
    settings, and `preferable_order` from the enabled regions by position (then target and region name).

    Raises ConfigError when no master region is set.
    """
    defaults = Defaults.load()
    main = MasterSettings.load()
    targets = {target.name: target.to_policy(defaults) for target in Target.objects.prefetch_related("decisions").all()}
    if "master" not in targets:
        targets["master"] = Target(name="master").to_policy(defaults)
    if not main.master_region:
        raise ConfigError("database configuration: no master region (set it in the admin: Master settings)")
    order = [
        region.fullname
        for region in Region.objects.filter(enabled=True)
        .select_related("target")
        .order_by("position", "target__name", "name")
    ]
    return SyncConfig(
        master_region=main.master_region,
        targets=targets,
        preferable_order=order,
        max_children=main.max_children,
        images_dir=main.images_dir or None,
    )


SETS = ("forcesyncs", "replace", "rename", "dontupdate", "ignore_regions", "metadata_set", "obsolete_syncprops")


def _value(value) -> str:
    """An INI value: '%' doubled (interpolation), continuation lines indented."""
    return str(value).replace("%", "%%").replace("\n", "\n    ")


def _target_lines(policy: TargetPolicy, include_passwords: bool) -> list[str]:
    lines = [f"[{policy.name}]"]
    if policy.user or policy.keystone_url or policy.tenant or policy.password:
        password = policy.password if include_passwords and policy.password else ""
        encoded = base64.b64encode(password.encode("utf-8")).decode("ascii")
        if not include_passwords and policy.password:
            lines.append("# password omitted: export with --include-passwords to write it")
        fields = (policy.user or "", encoded, policy.keystone_url or "", policy.tenant or "")
        lines.append("credential = " + _value(",".join(fields)))
    lines.append(f"use_keystone_v3 = {policy.use_keystone_v3}")
    for key in ("user_domain", "project_domain"):
        if getattr(policy, key) != "Default":
            lines.append(f"{key} = {_value(getattr(policy, key))}")
    optional = {"cloud": policy.cloud_name, "cacert": policy.cacert, "tenant_id": policy.tenant_id}
    lines.extend(f"{key} = {_value(value)}" for key, value in optional.items() if value)
    if policy.insecure:
        lines.append("insecure = True")
    for key in SETS:
        values = getattr(policy, key)
        if values:
            lines.append(f"{key} = {_value(', '.join(sorted(values)))}")
    if policy.metadata_condition:
        lines.append(f"metadata_condition = {_value(policy.metadata_condition.strip())}")
    lines.append(f"only_tenant_images = {policy.only_tenant_images}")
    lines.append(f"support_obsolete_images = {policy.support_obsolete_images}")
    lines.append(f"list_images_timeout = {policy.list_images_timeout}")
    lines.append(f"follow_rotations = {policy.follow_rotations}")
    if policy.transfer != "auto":
        lines.append(f"transfer = {policy.transfer}")
    return lines


def render(config: SyncConfig, include_passwords: bool = False) -> str:
    """The configuration as a legacy glancesync.conf (the export, and how overrides apply to it)."""
    lines = ["# glancesync.conf exported by manage.py export_glancesync_conf", "", "[main]"]
    lines.append(f"master_region = {_value(config.master_region)}")
    if config.preferable_order:
        lines.append(f"preferable_order = {_value(', '.join(config.preferable_order))}")
    lines.append(f"max_children = {config.max_children}")
    if config.images_dir:
        lines.append(f"images_dir = {_value(config.images_dir)}")
    names = ["master", *sorted(name for name in config.targets if name != "master")]
    for name in names:
        lines.append("")
        lines.extend(_target_lines(config.targets[name], include_passwords))
    return "\n".join(lines) + "\n"
