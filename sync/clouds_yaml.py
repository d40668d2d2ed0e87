"""Reading an openstacksdk clouds.yaml and importing its entries as targets (issue #4), shared by
`manage.py import_clouds_yaml` and the console's "Connect a cloud" page (sync/connect_views.py).

- `parse_clouds(text, source)` gives the `clouds` mapping of a clouds.yaml text; `read_clouds(path)` reads a file.
  A YAML error names the line and column, never the text (it could quote a password).
- `entry_fields(entry)` turns one entry into Target field values, region names and notes (`prepare` does it for
  several, naming the cloud in errors).
- `CloudImport` creates or updates the targets and their regions, audited, recording one line per change; run it
  inside a transaction (`import_clouds` does, and rolls back a dry run).

Errors are `CloudsYamlError`: one line naming the source and the cloud, without any password of the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max

from sync.engine.model import TRANSFERS
from sync.models import AuditEntry, Region, SingletonModel, Target

WHO = "import_clouds_yaml"
PASSWORD_AUTH_TYPES = {"password", "v3password", "v2password"}
V3_VALUES = {"3", "3.0", "v3"}
V2_VALUES = {"2", "2.0", "v2", "v2.0"}


class CloudsYamlError(Exception):
    """The text or an entry cannot be imported; the message is one line without any secret."""


class EntryError(Exception):
    """A problem with one cloud entry (the message names keys, never the values of secrets)."""


class _DryRun(Exception):
    pass


def _text(entry: dict, key: str, where: str) -> str:
    """A scalar value as stripped text ('' when absent or null); a list or mapping is refused."""
    value = entry.get(key)
    if value is None:
        return ""
    if isinstance(value, dict | list):
        raise EntryError(
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
    raise EntryError(f"{key} must be true or false")


def _domain(auth: dict, kind: str) -> str:
    """The user or project domain name ('' for Default, as the models store it)."""
    name = _text(auth, f"{kind}_domain_name", "auth.") or _text(auth, "domain_name", "auth.")
    if not name:
        domain_id = _text(auth, f"{kind}_domain_id", "auth.") or _text(auth, "domain_id", "auth.")
        if domain_id and domain_id.lower() != "default":
            raise EntryError(
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
        raise EntryError("regions must be a list of region names (or of mappings with a name)")
    for number, item in enumerate(regions, 1):
        name = item.get("name") if isinstance(item, dict) else item
        if name is None or isinstance(name, dict | list) or not str(name).strip():
            raise EntryError(f"regions item #{number} has no name")
        name = str(name).strip()
        if name not in names:
            names.append(name)
    return names


def entry_fields(entry) -> tuple[dict, list[str], list[str]]:
    """(Target field values, region names, notes) of one cloud entry; raises EntryError."""
    if not isinstance(entry, dict):
        raise EntryError("the entry is not a mapping")
    auth = entry.get("auth")
    if auth is None:
        auth = {}
    if not isinstance(auth, dict):
        raise EntryError("auth is not a mapping")
    notes = []
    auth_type = _text(entry, "auth_type", "")
    if auth_type and auth_type.lower() not in PASSWORD_AUTH_TYPES:
        raise EntryError(f"auth_type {auth_type} is not supported: only password authentication can be imported")
    auth_url = _text(auth, "auth_url", "auth.")
    if not auth_url:
        raise EntryError("no auth.auth_url")
    project_name = _text(auth, "project_name", "auth.") or _text(auth, "tenant_name", "auth.")
    if not project_name:
        if _text(auth, "project_id", "auth.") or _text(auth, "tenant_id", "auth."):
            raise EntryError("auth.project_id alone is not enough: GlanceSync needs auth.project_name")
        raise EntryError("no auth.project_name")
    version = _text(entry, "identity_api_version", "").lower() or "3"
    if version in V3_VALUES:
        version = Target.IdentityVersion.V3
    elif version in V2_VALUES:
        version = Target.IdentityVersion.V2
    else:
        raise EntryError(f"identity_api_version {version} is not supported: use 3 or 2.0")
    verify = _bool(entry, "verify")
    insecure = _bool(entry, "insecure")
    interface = _text(entry, "interface", "")
    if interface and interface.lower() not in ("public", "publicurl"):
        notes.append(f"interface {interface} ignored: GlanceSync uses the public endpoints")
    transfer = _text(entry, "glancesync_transfer", "").lower()
    if transfer and transfer not in TRANSFERS:
        raise EntryError(f"glancesync_transfer {transfer} is not auto, stream or glance-download")
    fields = {
        "auth_url": auth_url,
        "identity_api_version": str(version),
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
    if transfer:  # GlanceSync's own key (openstacksdk ignores it); absent: the target keeps its choice
        fields["transfer"] = transfer
    return fields, _regions(entry), notes


def secrets_of(clouds: dict) -> list[str]:
    """Every password-like value of the entries, longest first, to keep them out of any message."""
    found = []
    for entry in clouds.values():
        auth = entry.get("auth") if isinstance(entry, dict) else None
        if isinstance(auth, dict):
            for key, value in auth.items():
                if ("password" in key or "secret" in key or "token" in key) and value not in (None, ""):
                    found.append(str(value))
    return sorted(found, key=len, reverse=True)


def scrub(message: str, secrets: list[str]) -> str:
    for secret in secrets:
        if len(secret) >= 3:
            message = message.replace(secret, "***")
    return message


def parse_clouds(text: str, source: str) -> dict:
    """The `clouds` mapping of a clouds.yaml text; CloudsYamlError (one line, no text of it) when it is not one."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        # Only the problem and where: the YAML library's snippet of the line could hold a password.
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or "cannot be parsed"
        raise CloudsYamlError(f"{source}: not valid YAML: {problem}{where}") from None
    if not isinstance(data, dict) or not isinstance(data.get("clouds"), dict):
        raise CloudsYamlError(f"{source}: no 'clouds' mapping (not an openstacksdk clouds.yaml)")
    if not data["clouds"]:
        raise CloudsYamlError(f"{source}: the 'clouds' mapping is empty")
    return {str(name): entry for name, entry in data["clouds"].items()}


def read_clouds(path: str) -> dict:
    """The `clouds` mapping of the file; CloudsYamlError (one line, no file content) when it cannot be read."""
    file = Path(path)
    if not file.exists():
        raise CloudsYamlError(f"{path}: file not found")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise CloudsYamlError(f"{path}: cannot be read: {reason}") from None
    return parse_clouds(text, path)


@dataclass
class Prepared:
    """One cloud entry ready to import: Target field values (the password among them), regions, notes."""

    fields: dict
    regions: list[str]
    notes: list[str] = field(default_factory=list)


def prepare(entries: dict, selected: list[str], source: str) -> dict[str, Prepared]:
    """entry_fields of each selected cloud; CloudsYamlError naming the source and the cloud (no secret)."""
    prepared = {}
    for cloud in selected:
        try:
            prepared[cloud] = Prepared(*entry_fields(entries[cloud]))
        except EntryError as error:
            raise CloudsYamlError(scrub(f"{source}: cloud {cloud}: {error}", secrets_of(entries))) from None
    return prepared


class CloudImport:
    """Creates or updates one target per cloud and its regions, writing an audit entry per change (field names
    only) and a line per change in `changes`. Run it inside a transaction: an error leaves half of it done."""

    def __init__(self, source: str, user=None, username: str = WHO) -> None:
        self.source = source
        self.user = user
        self.username = username
        self.changes: list[str] = []
        self.notes: list[str] = []

    def record(self, obj, action: str, fields=()) -> None:
        AuditEntry.record(self.user, obj, action, fields, username=self.username)
        shown = f" ({', '.join(sorted(fields))})" if fields and action == "change" else ""
        verb = {"create": "create", "change": "update", "delete": "delete"}[action]
        named = "" if isinstance(obj, SingletonModel) else f" {obj}"  # "update master settings (...)"
        self.changes.append(f"{verb} {obj._meta.verbose_name}{named}{shown}")

    def run(self, prepared: dict[str, Prepared], master: str | None = None) -> None:
        """Import every prepared cloud (`master`: the cloud imported as the target `master`)."""
        last = Region.objects.aggregate(last=Max("position"))["last"]
        next_position = 0 if last is None else last + 1
        for cloud, entry in prepared.items():
            name = "master" if cloud == master else cloud
            label = f"{self.source}: cloud {cloud}"
            if name != cloud:
                self.notes.append(f"cloud {cloud} is imported as the target master")
            self.notes.extend(f"cloud {cloud}: {note}" for note in entry.notes)
            target = self._target(name, dict(entry.fields), label, cloud)
            for region_name in entry.regions:
                region = Region.objects.filter(target=target, name=region_name).first()
                if region is None:
                    region = Region(target=target, name=region_name, enabled=True, position=next_position)
                    _validate(region, f"{label}: region {region_name}", exclude=["target"])
                    region.save()
                    next_position += 1
                    self.record(region, "create")
                elif not region.enabled:
                    self.notes.append(f"region {region} is disabled in the database: kept disabled")
            others = target.regions.exclude(name__in=entry.regions).values_list("name", flat=True)
            for other in others:
                self.notes.append(f"target {name}: region {other} is not in cloud {cloud}: kept as it is")

    def _target(self, name: str, fields: dict, label: str, cloud: str) -> Target:
        target = Target.objects.filter(name=name).first()
        created = target is None
        if created:
            target = Target(name=name)
        if not fields.get("password", ""):
            fields.pop("password", None)
            if target.password:
                self.notes.append(f"cloud {cloud}: no password in the file, the stored one of target {name} is kept")
            else:
                self.notes.append(f"cloud {cloud}: no password in the file: set the one of target {name} in the admin")
        changed = [key for key, value in fields.items() if getattr(target, key) != value]
        for key, value in fields.items():
            setattr(target, key, value)
        _validate(target, label)
        if created or changed:
            target.save()
            self.record(target, "create" if created else "change", changed)
        return target


def import_clouds(
    prepared: dict[str, Prepared], master: str | None, source: str, dry_run: bool = False, secrets=()
) -> CloudImport:
    """Import the prepared clouds in one transaction (rolled back in a dry run); CloudsYamlError changes nothing."""
    done = CloudImport(source)
    try:
        with transaction.atomic():
            done.run(prepared, master)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    except CloudsYamlError as error:
        raise CloudsYamlError(scrub(str(error), list(secrets))) from None
    return done


def _validate(obj, label: str, exclude=None) -> None:
    try:
        obj.full_clean(exclude=exclude, validate_unique=False)
    except ValidationError as error:
        problems = "; ".join(
            f"{field}: {' '.join(messages)}" for field, messages in getattr(error, "message_dict", {}).items()
        ) or " ".join(error.messages)
        raise CloudsYamlError(f"{label}: {problems}") from None
