"""Helpers for reading settings from the environment, and the generated secret key.

Only django.core.exceptions is imported, so settings.py (and tests) can use these before Django is configured.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})

# Same alphabet and length as django.core.management.utils.get_random_secret_key().
_KEY_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789!@#$%^&*(-_=+)"
_KEY_LENGTH = 50


def env_str(name: str, default: str = "", environ: Mapping[str, str] | None = None) -> str:
    """The variable's value with surrounding blanks removed; ``default`` when unset or blank."""
    value = (os.environ if environ is None else environ).get(name, "").strip()
    return value or default


def env_bool(name: str, default: bool = False, environ: Mapping[str, str] | None = None) -> bool:
    """True for 1/true/yes/on, False for 0/false/no/off (any case); ``default`` when unset or blank.

    Any other value is an error rather than a silent guess.
    """
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or not raw.strip():
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a yes/no value (use 1/true/yes or 0/false/no)")


def env_list(name: str, default: str = "", environ: Mapping[str, str] | None = None) -> list[str]:
    """A comma-separated variable as a list, blanks and empty items dropped."""
    raw = (os.environ if environ is None else environ).get(name)
    if raw is None or not raw.strip():
        raw = default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(name: str, default: str = "", environ: Mapping[str, str] | None = None) -> list[str]:
    """A comma-separated list of networks in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`; an address alone is
    one host), normalised; anything else is an error."""
    networks = []
    for item in env_list(name, default, environ):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {item!r} is not a network (use CIDR, e.g. 10.0.0.0/8)") from None
    return networks


def parse_role_mapping(name: str, raw: str, allowed: tuple[str, ...]) -> dict[str, str]:
    """`keystone_role=console_role,...` as a dict keyed by the case-folded Keystone role name; every value one of
    ``allowed``. A malformed item, an unknown console role, a role mapped twice or an empty mapping is an error."""
    mapping: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key or not value:
            raise ImproperlyConfigured(f"{name}: {item!r} is not keystone_role=console_role (e.g. reader=viewer)")
        value = value.lower()
        if value not in allowed:
            raise ImproperlyConfigured(f"{name}: {item!r}: {value!r} is not a console role (use {', '.join(allowed)})")
        if mapping.get(key.casefold(), value) != value:
            raise ImproperlyConfigured(f"{name}: the Keystone role {key!r} is mapped to two console roles")
        mapping[key.casefold()] = value
    if not mapping:
        raise ImproperlyConfigured(
            f"{name}={raw!r} maps no Keystone role (e.g. reader=viewer; GLANCESYNC_KEYSTONE_LOGIN=off turns Keystone "
            "login off)"
        )
    return mapping


def env_role_mapping(
    name: str, default: str, allowed: tuple[str, ...], environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A `keystone_role=console_role,...` variable (see parse_role_mapping); ``default`` when unset or blank."""
    return parse_role_mapping(name, env_str(name, default, environ), allowed)


def env_int(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    raw = env_str(name, environ=environ)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def generate_secret_key() -> str:
    return "".join(secrets.choice(_KEY_CHARS) for _ in range(_KEY_LENGTH))


def load_or_create_secret_key(path: str | os.PathLike[str]) -> str:
    """Return the secret key stored in ``path``, creating the file (mode 0600) on first use.

    The parent directory is created (mode 0700) if missing. Creation is atomic: the key is written to a
    private temporary file which is then hard-linked into place, so concurrent first runs (web server and
    task cluster starting together) agree on one key and nobody ever reads a half-written file.
    """
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(generate_secret_key() + "\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process won the race; use its key
            except OSError:
                # No hard links on this filesystem: fall back to a plain (still atomic) rename.
                if not path.exists():
                    os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_text(encoding="utf-8").strip()
    if not key:
        raise ImproperlyConfigured(f"secret key file {path} is empty; delete it to have a new key generated")
    return key
