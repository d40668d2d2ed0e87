"""Export the database configuration as a legacy glancesync.conf (issue #4).

The file is written from `load_db_config()`, i.e. with every target's effective values, so that the original
tool (or `manage.py glancesync --config-file`) reads the same configuration, and importing it again is lossless.
Passwords are left out unless --include-passwords is given; then they are written base64-encoded in
`credential` lines as the original expects, and only to a file (--output) created readable by its owner only.
"""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand, CommandError

from sync.dbconfig import load_db_config, render
from sync.engine.config import ConfigError


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
