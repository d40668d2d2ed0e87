"""Import a legacy glancesync.conf into the database configuration (issue #4).

The file is read by the engine's own reader (sync.engine.config.load_config), so it is accepted or refused
exactly as `manage.py glancesync --config-file` would. That reader already merges [DEFAULT] and the built-in
defaults into every target, so each Target receives its *effective* values and the Defaults record is left as it
is. Everything happens in one transaction: a file that cannot be read or a value the models refuse changes
nothing. Running the same import twice reports "no changes".

- Targets named in the file are created or updated; targets only in the database are kept (and listed).
- Their checksum decisions become exactly the file's dontupdate / rename / replace lists. A checksum in several
  lists keeps the one the engine applies (dontupdate, then rename, then replace) and the others are reported.
- Regions come from [main] preferable_order (bare names and `master:` are master regions); their position is
  the order of that list. Regions already in the database are kept.
- An empty password in the file (e.g. an export made without --include-passwords) keeps the stored password.
- Environment variables (OS_*) are not read: only the file counts.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from sync.engine.config import ConfigError, load_config
from sync.engine.model import TargetPolicy
from sync.management.importing import report_changes
from sync.models import HEX_CHECKSUM, AuditEntry, ChecksumDecision, MasterSettings, Region, Target

WHO = "import_glancesync_conf"
DECISION_ORDER = ("dontupdate", "rename", "replace")  # the engine's precedence (sync/engine/status.py)


class _DryRun(Exception):
    pass


def _csv(values) -> str:
    return ", ".join(sorted(values))


def target_fields(policy: TargetPolicy) -> dict:
    return {
        "auth_url": policy.keystone_url or "",
        "identity_api_version": Target.IdentityVersion.V3 if policy.use_keystone_v3 else Target.IdentityVersion.V2,
        "user": policy.user or "",
        "password": policy.password or "",
        "project_name": policy.tenant or "",
        "user_domain": "" if policy.user_domain == "Default" else policy.user_domain,
        "project_domain": "" if policy.project_domain == "Default" else policy.project_domain,
        "cacert": policy.cacert or "",
        "insecure": policy.insecure,
        "clouds_yaml_cloud": policy.cloud_name or "",
        "tenant_id": policy.tenant_id or "",
        "forcesyncs": _csv(policy.forcesyncs),
        "metadata_condition": (policy.metadata_condition or "").strip(),
        "metadata_set": _csv(policy.metadata_set),
        "only_tenant_images": policy.only_tenant_images,
        "support_obsolete_images": policy.support_obsolete_images,
        "obsolete_syncprops": _csv(policy.obsolete_syncprops),
        "list_images_timeout": policy.list_images_timeout,
        "follow_rotations": policy.follow_rotations,
        "transfer": policy.transfer,
        "ignore_regions": _csv(policy.ignore_regions),
    }


def decisions_of(policy: TargetPolicy) -> tuple[dict[str, str], list[str]]:
    """{checksum: action} with the engine's precedence, and notes about checksums listed more than once."""
    chosen: dict[str, str] = {}
    notes = []
    for action in DECISION_ORDER:
        for checksum in sorted(getattr(policy, action)):
            checksum = checksum.lower() if HEX_CHECKSUM.match(checksum.lower()) else checksum
            if checksum in chosen:
                notes.append(
                    f"target {policy.name}: checksum {checksum} is in {chosen[checksum]} and {action}: "
                    f"kept {chosen[checksum]} (what the engine applies)"
                )
            else:
                chosen[checksum] = action
    return chosen, notes


def _validate(obj, label: str, exclude=None) -> None:
    try:
        obj.full_clean(exclude=exclude, validate_unique=False)
    except ValidationError as error:
        problems = "; ".join(
            f"{field}: {' '.join(messages)}" for field, messages in getattr(error, "message_dict", {}).items()
        ) or " ".join(error.messages)
        raise CommandError(f"{label}: {problems}") from None


class Command(BaseCommand):
    help = "Create or update the database configuration from a legacy glancesync.conf (one transaction)."

    def add_arguments(self, parser):
        parser.add_argument("path", help="the glancesync.conf file")
        parser.add_argument("--dry-run", action="store_true", help="report what would change, change nothing")

    def handle(self, *args, path, dry_run=False, **options):
        try:
            config = load_config(path, environ={}, require_credentials=False)
        except ConfigError as error:
            raise CommandError(f"nothing imported: {error}") from None
        self.changes: list[str] = []
        notes: list[str] = []
        try:
            with transaction.atomic():
                self._import(config, notes)
                if dry_run:
                    raise _DryRun
        except _DryRun:
            pass
        except CommandError as error:
            raise CommandError(f"nothing imported: {error}") from None
        for note in notes:
            self.stdout.write(f"note: {note}")
        report_changes(self.stdout.write, path, self.changes, dry_run, "the database already holds this configuration")

    def _record(self, obj, action: str, fields=()) -> None:
        AuditEntry.record(None, obj, action, fields, username=WHO)
        shown = f" ({', '.join(sorted(fields))})" if fields and action == "change" else ""
        verb = {"create": "create", "change": "update", "delete": "delete"}[action]
        label = f" {obj.target.name}: {obj}" if isinstance(obj, ChecksumDecision) else f" {obj}"
        label = "" if isinstance(obj, MasterSettings) else label
        self.changes.append(f"{verb} {obj._meta.verbose_name}{label}{shown}")

    def _import(self, config, notes: list[str]) -> None:
        main = MasterSettings.load()
        main_created = main._state.adding
        wanted = {"master_region": config.master_region, "max_children": config.max_children}
        wanted["images_dir"] = config.images_dir or ""
        changed = [name for name, value in wanted.items() if getattr(main, name) != value]
        for name, value in wanted.items():
            setattr(main, name, value)
        _validate(main, "[main]")
        if main_created or changed:
            main.save()
            self._record(main, "create" if main_created else "change", changed)

        targets = {}
        for name, policy in config.targets.items():
            targets[name] = self._import_target(policy, notes)
        others = Target.objects.exclude(name__in=list(config.targets)).values_list("name", flat=True)
        for name in others:
            notes.append(f"target {name} is not in the file: kept as it is")

        for position, item in enumerate(config.preferable_order):
            target_name, _, region_name = item.rpartition(":")
            target_name = target_name or "master"
            target = targets.get(target_name)
            if target is None:
                notes.append(f"preferable_order: {item}: no target {target_name} in the file, ignored")
                continue
            region = Region.objects.filter(target=target, name=region_name).first()
            if region is None:
                region = Region(target=target, name=region_name, position=position)
                _validate(region, f"preferable_order: {item}", exclude=["target"])
                region.save()
                self._record(region, "create")
            elif region.position != position:
                region.position = position
                region.save()
                self._record(region, "change", ["position"])

    def _import_target(self, policy: TargetPolicy, notes: list[str]) -> Target:
        target = Target.objects.filter(name=policy.name).first()
        created = target is None
        if created:
            target = Target(name=policy.name)
        fields = target_fields(policy)
        if not fields["password"] and target.password:
            del fields["password"]
            notes.append(f"target {policy.name}: no password in the file, the stored one is kept")
        changed = [name for name, value in fields.items() if getattr(target, name) != value]
        for name, value in fields.items():
            setattr(target, name, value)
        _validate(target, f"target {policy.name}")
        if created or changed:
            target.save()
            self._record(target, "create" if created else "change", changed)

        wanted, conflicts = decisions_of(policy)
        notes.extend(conflicts)
        existing = {decision.checksum: decision for decision in target.decisions.all()}
        for checksum, decision in existing.items():
            if checksum not in wanted:
                self._record(decision, "delete")
                decision.delete()
        for checksum, action in wanted.items():
            decision = existing.get(checksum)
            if decision is None:
                decision = ChecksumDecision(
                    target=target, checksum=checksum, action=action, reason=f"imported by {WHO}"
                )
                _validate(decision, f"target {policy.name}: {action} {checksum}")
                decision.save()
                self._record(decision, "create")
            elif decision.action != action:
                decision.action = action
                _validate(decision, f"target {policy.name}: {action} {checksum}")
                decision.save()
                self._record(decision, "change", ["action"])
        return target
