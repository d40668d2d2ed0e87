"""Rotate the Fernet key that encrypts secrets at rest, and re-encrypt every stored secret with it."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from sync import crypto


class Command(BaseCommand):
    help = (
        "Put a new Fernet key first in the key file and re-encrypt every encrypted field with it (one "
        "transaction). Old keys stay readable until the next rotation unless --drop-old is given."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--drop-old", action="store_true", help="remove the old keys once every secret is re-encrypted"
        )
        parser.add_argument(
            "--reencrypt-only",
            action="store_true",
            help="no new key: re-encrypt with the current first key (for keys given in GLANCESYNC_FERNET_KEYS)",
        )

    def handle(self, *args, drop_old=False, reencrypt_only=False, **options):
        try:
            if reencrypt_only:
                keys, source = crypto.current_keys()
            else:
                keys, source = crypto.rotate_keys()
                self.stdout.write(f"New key added first in {source} ({len(keys)} keys now).")
            with transaction.atomic():
                count = crypto.reencrypt_all()
            self.stdout.write(f"Re-encrypted {count} secret(s) with the newest key.")
            if drop_old:
                dropped = crypto.keep_keys(1)
                self.stdout.write(f"Dropped {len(dropped)} old key(s): tokens made with them can no longer be read.")
            elif source != crypto.ENV_KEYS and len(keys) > 1:
                dropped = crypto.keep_keys(2)
                if dropped:
                    self.stdout.write(f"Dropped {len(dropped)} key(s) older than the previous one (no longer used).")
                self.stdout.write(
                    "The previous key stays readable until the next rotation (run with --drop-old to remove it now)."
                )
        except ImproperlyConfigured as error:
            raise CommandError(str(error)) from None
