"""Export the database configuration as a legacy glancesync.conf (issue #4).

The file is written from `load_db_config()`, i.e. with every target's effective values, so that the original
tool (or `manage.py glancesync --config-file`) reads the same configuration, and importing it again is lossless.
Passwords are left out unless --include-passwords is given; then they are written base64-encoded in
`credential` lines as the original expects, and only to a file (--output) created readable by its owner only.
"""

from __future__ import annotations

import base64
import os

from django.core.management.base import BaseCommand, CommandError

from sync.dbconfig import load_db_config
from sync.engine.config import ConfigError
from sync.engine.model import SyncConfig, TargetPolicy

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
    return lines


def render(config: SyncConfig, include_passwords: bool = False) -> str:
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


class Command(BaseCommand):
    help = "Write the database configuration as a legacy glancesync.conf (passwords only with --include-passwords)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--include-passwords",
            action="store_true",
            help="write the passwords (base64, as the original expects); needs --output, created with mode 0600",
        )
        parser.add_argument("--output", "-o", help="file to write (default: standard output)")

    def handle(self, *args, include_passwords=False, output=None, **options):
        if include_passwords and not output:
            raise CommandError("--include-passwords needs --output FILE (the file is made readable by you only)")
        try:
            text = render(load_db_config(), include_passwords)
        except ConfigError as error:
            raise CommandError(str(error)) from None
        if not output:
            self.stdout.write(text, ending="")
            return
        try:
            if os.path.exists(output):
                os.chmod(output, 0o600)
            descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
                stream.write(text)
        except OSError as error:
            raise CommandError(f"cannot write {output}: {error.strerror}") from None
        self.stderr.write(f"wrote {output}" + (" (with passwords, mode 0600)" if include_passwords else ""))
