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

The reading and the import live in sync/clouds_yaml.py, which the console's "Connect a cloud" page uses too.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from sync.clouds_yaml import CloudsYamlError, import_clouds, prepare, read_clouds, scrub, secrets_of
from sync.management.importing import report_changes


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
        try:
            entries = read_clouds(path)
        except CloudsYamlError as error:
            raise CommandError(str(error)) from None
        secrets = secrets_of(entries)
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
        try:
            done = import_clouds(prepare(entries, selected, path), master, path, dry_run=dry_run, secrets=secrets)
        except CloudsYamlError as error:
            raise CommandError(f"nothing imported: {error}") from None
        for note in done.notes:
            self.stdout.write(scrub(f"note: {note}", secrets))
        report_changes(self.stdout.write, path, done.changes, dry_run, "the database already holds these clouds")
