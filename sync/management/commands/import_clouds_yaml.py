"""Import the entries of an openstacksdk clouds.yaml as targets of the database configuration (issue #4).

`manage.py import_clouds_yaml PATH [--cloud NAME ...] [--master NAME] [--dry-run]`

- One Target per cloud entry (all of them, or only the --cloud names), named after the cloud; `--master NAME`
  imports that entry as the target `master` (the one holding the master region).
- Copied from the entry: auth.auth_url, auth.username, auth.password, auth.project_name (or tenant_name),
  auth.user_domain_name / auth.project_domain_name (or auth.domain_name; "Default" when absent),
  identity_api_version ('3' by default, '2' / '2.0' for v2.0), region_name, cacert, and `verify: false` (or
  `insecure: true`) as insecure. The credentials now live in the database, so the target's "clouds.yaml entry"
  field is cleared: the engine authenticates with the imported values, not through openstacksdk's file lookup.
- Only password authentication is imported: another auth_type (token, application credential, ...) and a project
  given only by id are refused. `interface` is not stored (GlanceSync uses the public endpoints): a value other
  than `public` is reported. secure.yaml / clouds-public.yaml are not merged: only the given file counts.
- Regions come from `region_name` and `regions` (strings or mappings with `name`): a missing region is created
  enabled, after every existing position (the end of the preferable order). Existing regions, their position and
  enabled state are kept; regions only in the database are kept too.
- An absent or empty password keeps the stored one. Target options (policies, checksum decisions) and the
  master settings are not touched.

Everything happens in one transaction: an error (file missing, not YAML, no `clouds` mapping, unknown --cloud,
an entry the command cannot import) changes nothing and is one line naming the file and the cloud, never a
password. Running the same import twice reports "no changes". Every change gets an audit entry (field names only).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Max

from sync.management.importing import report_changes
from sync.models import AuditEntry, Region, Target

WHO = "import_clouds_yaml"
PASSWORD_AUTH_TYPES = {"password", "v3password", "v2password"}
V3_VALUES = {"3", "3.0", "v3"}
V2_VALUES = {"2", "2.0", "v2", "v2.0"}


class _DryRun(Exception):
    pass


class _EntryError(Exception):
    """A problem with one cloud entry (the message names keys, never the values of secrets)."""


def _text(entry: dict, key: str, where: str) -> str:
    """A scalar value as stripped text ('' when absent or null); a list or mapping is refused."""
    value = entry.get(key)
    if value is None:
        return ""
    if isinstance(value, dict | list):
        raise _EntryError(
            f"{where}{key} must be a single value, not a {'list' if isinstance(value, list) else 'mapping'}"
        )
    return str(value).strip()


def _bool(entry: dict, key: str) -> bool | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise _EntryError(f"{key} must be true or false")


def _domain(auth: dict, kind: str) -> str:
    """The user or project domain name ('' for Default, as the models store it)."""
    name = _text(auth, f"{kind}_domain_name", "auth.") or _text(auth, "domain_name", "auth.")
    if not name:
        domain_id = _text(auth, f"{kind}_domain_id", "auth.") or _text(auth, "domain_id", "auth.")
        if domain_id and domain_id.lower() != "default":
            raise _EntryError(
                f"auth.{kind}_domain_id {domain_id} is not supported: give auth.{kind}_domain_name (a domain name)"
            )
        name = "Default"
    return "" if name == "Default" else name


def _regions(entry: dict) -> list[str]:
    """region_name first, then the `regions` list, without duplicates."""
    names = []
    region_name = _text(entry, "region_name", "")
    if region_name:
        names.append(region_name)
    regions = entry.get("regions") or []
    if isinstance(regions, str):
        regions = [regions]
    if not isinstance(regions, list):
        raise _EntryError("regions must be a list of region names (or of mappings with a name)")
    for number, item in enumerate(regions, 1):
        name = item.get("name") if isinstance(item, dict) else item
        if name is None or isinstance(name, dict | list) or not str(name).strip():
            raise _EntryError(f"regions item #{number} has no name")
        name = str(name).strip()
        if name not in names:
            names.append(name)
    return names


def entry_fields(entry) -> tuple[dict, list[str], list[str]]:
    """(Target field values, region names, notes) of one cloud entry; raises _EntryError."""
    if not isinstance(entry, dict):
        raise _EntryError("the entry is not a mapping")
    auth = entry.get("auth")
    if auth is None:
        auth = {}
    if not isinstance(auth, dict):
        raise _EntryError("auth is not a mapping")
    notes = []
    auth_type = _text(entry, "auth_type", "")
    if auth_type and auth_type.lower() not in PASSWORD_AUTH_TYPES:
        raise _EntryError(f"auth_type {auth_type} is not supported: only password authentication can be imported")
    auth_url = _text(auth, "auth_url", "auth.")
    if not auth_url:
        raise _EntryError("no auth.auth_url")
    project_name = _text(auth, "project_name", "auth.") or _text(auth, "tenant_name", "auth.")
    if not project_name:
        if _text(auth, "project_id", "auth.") or _text(auth, "tenant_id", "auth."):
            raise _EntryError("auth.project_id alone is not enough: GlanceSync needs auth.project_name")
        raise _EntryError("no auth.project_name")
    version = _text(entry, "identity_api_version", "").lower() or "3"
    if version in V3_VALUES:
        version = Target.IdentityVersion.V3
    elif version in V2_VALUES:
        version = Target.IdentityVersion.V2
    else:
        raise _EntryError(f"identity_api_version {version} is not supported: use 3 or 2.0")
    verify = _bool(entry, "verify")
    insecure = _bool(entry, "insecure")
    interface = _text(entry, "interface", "")
    if interface and interface.lower() not in ("public", "publicurl"):
        notes.append(f"interface {interface} ignored: GlanceSync uses the public endpoints")
    fields = {
        "auth_url": auth_url,
        "identity_api_version": version,
        "user": _text(auth, "username", "auth.") or _text(auth, "user_name", "auth."),
        "password": _text(auth, "password", "auth."),
        "project_name": project_name,
        "user_domain": _domain(auth, "user"),
        "project_domain": _domain(auth, "project"),
        "region_name": _text(entry, "region_name", ""),
        "cacert": _text(entry, "cacert", ""),
        "insecure": verify is False or insecure is True,
        "clouds_yaml_cloud": "",
    }
    return fields, _regions(entry), notes


def _secrets(clouds: dict) -> list[str]:
    """Every password-like value of the file, to keep them out of any message."""
    found = []
    for entry in clouds.values():
        auth = entry.get("auth") if isinstance(entry, dict) else None
        if isinstance(auth, dict):
            for key, value in auth.items():
                if ("password" in key or "secret" in key or "token" in key) and value not in (None, ""):
                    found.append(str(value))
    return sorted(found, key=len, reverse=True)


def _scrub(message: str, secrets: list[str]) -> str:
    for secret in secrets:
        if len(secret) >= 3:
            message = message.replace(secret, "***")
    return message


def read_clouds(path: str) -> dict:
    """The `clouds` mapping of the file; CommandError (one line, no file content) when it cannot be read."""
    file = Path(path)
    if not file.exists():
        raise CommandError(f"{path}: file not found")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise CommandError(f"{path}: cannot be read: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        # Only the problem and where: the YAML library's snippet of the line could hold a password.
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or "cannot be parsed"
        raise CommandError(f"{path}: not valid YAML: {problem}{where}") from None
    if not isinstance(data, dict) or not isinstance(data.get("clouds"), dict):
        raise CommandError(f"{path}: no 'clouds' mapping (not an openstacksdk clouds.yaml)")
    if not data["clouds"]:
        raise CommandError(f"{path}: the 'clouds' mapping is empty")
    return {str(name): entry for name, entry in data["clouds"].items()}


class Command(BaseCommand):
    help = "Create or update targets from the cloud entries of an openstacksdk clouds.yaml (one transaction)."

    def add_arguments(self, parser):
        parser.add_argument("path", help="the clouds.yaml file")
        parser.add_argument(
            "--cloud",
            dest="clouds",
            action="extend",
            nargs="+",
            default=[],
            metavar="NAME",
            help="import only these cloud entries (repeatable; default: all)",
        )
        parser.add_argument("--master", metavar="NAME", help="import this cloud entry as the target named 'master'")
        parser.add_argument("--dry-run", action="store_true", help="report what would change, change nothing")

    def handle(self, *args, path, clouds=(), master=None, dry_run=False, **options):
        entries = read_clouds(path)
        secrets = _secrets(entries)
        wanted = list(dict.fromkeys(clouds or ()))
        if master and wanted and master not in wanted:
            wanted.append(master)
        unknown = [name for name in [*wanted, *([master] if master else [])] if name not in entries]
        if unknown:
            known = ", ".join(entries)
            raise CommandError(f"{path}: cloud {unknown[0]} is not in the file (its clouds: {known})")
        selected = wanted or list(entries)
        if master is None and "master" in selected:
            master = "master"
        if master and master != "master" and "master" in selected:
            raise CommandError(
                f"{path}: cloud master and --master {master} would both be the target master: "
                "choose the clouds with --cloud"
            )

        self.changes: list[str] = []
        notes: list[str] = []
        try:
            with transaction.atomic():
                self._import(path, entries, selected, master, notes)
                if dry_run:
                    raise _DryRun
        except _DryRun:
            pass
        except CommandError as error:
            raise CommandError(_scrub(f"nothing imported: {error}", secrets)) from None
        for note in notes:
            self.stdout.write(_scrub(f"note: {note}", secrets))
        report_changes(self.stdout.write, path, self.changes, dry_run, "the database already holds these clouds")

    def _record(self, obj, action: str, fields=()) -> None:
        AuditEntry.record(None, obj, action, fields, username=WHO)
        shown = f" ({', '.join(sorted(fields))})" if fields and action == "change" else ""
        verb = {"create": "create", "change": "update"}[action]
        self.changes.append(f"{verb} {obj._meta.verbose_name} {obj}{shown}")

    def _import(self, path: str, entries: dict, selected: list[str], master: str | None, notes: list[str]) -> None:
        last = Region.objects.aggregate(last=Max("position"))["last"]
        next_position = 0 if last is None else last + 1
        for cloud in selected:
            name = "master" if cloud == master else cloud
            label = f"{path}: cloud {cloud}"
            if name != cloud:
                notes.append(f"cloud {cloud} is imported as the target master")
            try:
                fields, region_names, entry_notes = entry_fields(entries[cloud])
            except _EntryError as error:
                raise CommandError(f"{label}: {error}") from None
            notes.extend(f"cloud {cloud}: {note}" for note in entry_notes)
            target = self._import_target(name, fields, label, notes, cloud)
            for region_name in region_names:
                region = Region.objects.filter(target=target, name=region_name).first()
                if region is None:
                    region = Region(target=target, name=region_name, enabled=True, position=next_position)
                    _validate(region, f"{label}: region {region_name}", exclude=["target"])
                    region.save()
                    next_position += 1
                    self._record(region, "create")
                elif not region.enabled:
                    notes.append(f"region {region} is disabled in the database: kept disabled")
            others = target.regions.exclude(name__in=region_names).values_list("name", flat=True)
            for other in others:
                notes.append(f"target {name}: region {other} is not in cloud {cloud}: kept as it is")

    def _import_target(self, name: str, fields: dict, label: str, notes: list[str], cloud: str) -> Target:
        target = Target.objects.filter(name=name).first()
        created = target is None
        if created:
            target = Target(name=name)
        if not fields["password"]:
            del fields["password"]
            if target.password:
                notes.append(f"cloud {cloud}: no password in the file, the stored one of target {name} is kept")
            else:
                notes.append(f"cloud {cloud}: no password in the file: set the one of target {name} in the admin")
        changed = [key for key, value in fields.items() if getattr(target, key) != value]
        for key, value in fields.items():
            setattr(target, key, value)
        _validate(target, label)
        if created or changed:
            target.save()
            self._record(target, "create" if created else "change", changed)
        return target


def _validate(obj, label: str, exclude=None) -> None:
    try:
        obj.full_clean(exclude=exclude, validate_unique=False)
    except ValidationError as error:
        problems = "; ".join(
            f"{field}: {' '.join(messages)}" for field, messages in getattr(error, "message_dict", {}).items()
        ) or " ".join(error.messages)
        raise CommandError(f"{label}: {problems}") from None
