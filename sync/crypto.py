"""Encryption at rest of secrets stored in the database (target passwords), with Fernet from `cryptography`.

Keys (url-safe base64 Fernet keys, newest first) come from the environment variable GLANCESYNC_FERNET_KEYS
(comma-separated) or else from the key file `<DATA_DIR>/fernet_keys` (one key per line, mode 0600), created with
one fresh key on first use. The newest key encrypts; every listed key decrypts (MultiFernet), which is what lets
`manage.py rotate_secret_key` re-encrypt everything while old tokens stay readable.

`EncryptedTextField` stores the Fernet token in a text column and gives the plaintext to Python code; its
serialised form (`dumpdata`, fixtures) is the token, never the plaintext.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

ENV_KEYS = "GLANCESYNC_FERNET_KEYS"
KEY_FILE_NAME = "fernet_keys"

_lock = threading.Lock()
_cache: dict[str, MultiFernet] = {}


class SecretDecryptionError(ImproperlyConfigured):
    """A stored secret cannot be decrypted with the configured keys (the message never holds the token)."""


def key_file_path() -> Path:
    data_dir = getattr(settings, "DATA_DIR", None) or Path(settings.BASE_DIR) / "var"
    return Path(data_dir) / KEY_FILE_NAME


def keys_from_env() -> list[str] | None:
    raw = os.environ.get(ENV_KEYS, "").strip()
    if not raw:
        return None
    return [key.strip() for key in raw.split(",") if key.strip()]


def _check_keys(keys: list[str], source: str) -> list[str]:
    if not keys:
        raise ImproperlyConfigured(f"{source} holds no Fernet key")
    for number, key in enumerate(keys, 1):
        try:
            Fernet(key.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise ImproperlyConfigured(
                f"{source}: key #{number} is not a Fernet key (32 url-safe base64-encoded bytes)"
            ) from None
    return keys


def read_key_file(path: Path) -> list[str]:
    keys = [line.strip() for line in path.read_text(encoding="ascii").splitlines()]
    return _check_keys([key for key in keys if key and not key.startswith("#")], str(path))


def write_key_file(path: Path, keys: list[str]) -> None:
    """Write the keys (newest first) atomically, readable by the owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as stream:
        stream.write("".join(key + "\n" for key in keys))
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def current_keys() -> tuple[list[str], str]:
    """(keys newest first, where they come from); creates the key file with one new key on first use."""
    env = keys_from_env()
    if env is not None:
        return _check_keys(env, ENV_KEYS), ENV_KEYS
    path = key_file_path()
    with _lock:
        if not path.exists():
            write_key_file(path, [Fernet.generate_key().decode("ascii")])
    return read_key_file(path), str(path)


def get_fernet() -> MultiFernet:
    keys, source = current_keys()
    cache_key = source + "\0" + ",".join(keys)
    fernet = _cache.get(cache_key)
    if fernet is None:
        _cache.clear()
        fernet = _cache[cache_key] = MultiFernet([Fernet(key.encode("ascii")) for key in keys])
    return fernet


def encrypt(plaintext: str) -> str:
    return get_fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return get_fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeEncodeError):
        raise SecretDecryptionError(
            "a stored secret cannot be decrypted with the configured Fernet keys "
            f"({ENV_KEYS} or the key file): was a key removed or replaced?"
        ) from None


def is_token(value: str) -> bool:
    """True when `value` is a token our keys can decrypt (used to accept serialised data back)."""
    try:
        get_fernet().decrypt(value.encode("ascii"))
    except (InvalidToken, UnicodeEncodeError):
        return False
    return True


def rotate_keys() -> tuple[list[str], str]:
    """Prepend a new key to the key file; returns (new keys, source). Refused for environment keys."""
    keys, source = current_keys()
    if source == ENV_KEYS:
        raise ImproperlyConfigured(
            f"the keys come from {ENV_KEYS}: put a new key first in that variable yourself "
            "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'), "
            "then run rotate_secret_key --reencrypt-only"
        )
    keys = [Fernet.generate_key().decode("ascii"), *keys]
    write_key_file(key_file_path(), keys)
    return keys, source


def keep_keys(count: int) -> list[str]:
    """Keep only the `count` newest keys in the key file; returns the dropped ones. Refused for environment keys."""
    keys, source = current_keys()
    if source == ENV_KEYS:
        raise ImproperlyConfigured(f"the keys come from {ENV_KEYS}: remove the old keys from that variable yourself")
    if len(keys) > count:
        write_key_file(key_file_path(), keys[:count])
    return keys[count:]


class EncryptedTextField(models.TextField):
    """A text field whose database value is a Fernet token; Python code sees the plaintext.

    None stays NULL and "" stays "" (so "not set" needs no decryption). Serialisation (`value_to_string`, used by
    dumpdata) yields the token; `to_python` turns such a token back into the plaintext, so loaddata works.
    Lookups on the field cannot match (tokens are randomised).
    """

    description = "Text encrypted at rest (Fernet)"

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt(value)

    def to_python(self, value):
        if isinstance(value, str) and value.startswith("gAAAAA") and is_token(value):
            return decrypt(value)
        return super().to_python(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(str(value))

    def value_to_string(self, obj):
        value = self.value_from_object(obj)
        if value is None or value == "":
            return value
        return encrypt(str(value))


def encrypted_fields():
    """(model, [field names]) for every installed model with encrypted fields."""
    from django.apps import apps

    found = []
    for model in apps.get_models():
        names = [field.name for field in model._meta.concrete_fields if isinstance(field, EncryptedTextField)]
        if names:
            found.append((model, names))
    return found


def reencrypt_all() -> int:
    """Re-encrypt every encrypted value with the newest key (call inside a transaction); returns the count."""
    count = 0
    for model, names in encrypted_fields():
        for row in model._default_manager.values("pk", *names):
            values = {name: row[name] for name in names if row[name]}
            if values:
                model._default_manager.filter(pk=row["pk"]).update(**values)
                count += len(values)
    return count
