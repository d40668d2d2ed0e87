"""`manage.py glancesync_demo`: copy the built-in demo cloud (sync/demo/cloud) to a folder the console can use."""

from __future__ import annotations

import io
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from sync.clouds import FILES_SCHEME
from sync.dbconfig import database_configured
from sync.demo import DEMO_RATE_MB_S
from sync.models import MasterSettings, Target

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"
DEMO_CLOUD = DEMO_DIR / "cloud"
DEMO_CONFIG = DEMO_DIR / "glancesync.conf"


def console_cloud_folder() -> Path | None:
    """The folder of GLANCESYNC_CLOUD when it is `files:DIR[?options]`, else None."""
    url = settings.GLANCESYNC_CLOUD
    directory = url[len(FILES_SCHEME) :].partition("?")[0] if url.startswith(FILES_SCHEME) else ""
    return Path(directory).expanduser().absolute() if directory else None


def default_demo_path() -> Path:
    """The folder of GLANCESYNC_CLOUD when it is `files:DIR`, else `<data dir>/demo-cloud`."""
    return console_cloud_folder() or Path(settings.DATA_DIR) / "demo-cloud"


def is_backup_file(name: str) -> bool:
    return name.startswith("backup_") and name.endswith(".csv")


def demo_files() -> list[Path]:
    return sorted(p for p in DEMO_CLOUD.iterdir() if p.is_file() and is_backup_file(p.name))


class Command(BaseCommand):
    help = "Copy the built-in demo cloud (backup CSVs) to the demo folder, unless it is already there."

    def add_arguments(self, parser):
        parser.add_argument(
            "--path",
            metavar="DIR",
            help="demo folder (default: the folder of GLANCESYNC_CLOUD when it is files:DIR, "
            "else <GLANCESYNC_DATA_DIR>/demo-cloud)",
        )
        parser.add_argument(
            "--console",
            action="store_true",
            help="also prepare the console on the embedded default (SQLite, files: cloud): import the demo "
            "configuration into the database and create a demo operator account, unless there are already ones",
        )
        parser.add_argument(
            "--reset",
            action="store_true",
            help="remove the demo folder first (only if it holds nothing but backup_*.csv files)",
        )

    def handle(self, *args, **options):
        path = Path(options["path"]).expanduser() if options["path"] else default_demo_path()
        path = path.absolute()
        if options["reset"] and os.path.lexists(path):
            _remove_demo_folder(path)
            self.stdout.write(f"Removed the old demo cloud {path}")
        if _has_backups(path):
            self.stdout.write(f"Demo cloud already in {path}: left as it is (--reset starts over).")
        else:
            copied = _copy_demo(path)
            self.stdout.write(f"Demo cloud copied to {path} ({copied} region files).")
        if options["console"]:
            self._prepare_console(path)
        else:
            self._hints(path)

    def _prepare_console(self, path: Path) -> None:
        """Configuration in the database and a first account, only on the embedded default and only once."""
        if not _embedded_default() or console_cloud_folder() != path:
            self.stdout.write("Not the embedded default (SQLite and this demo cloud): the console is left as it is.")
            return
        # A configuration already there is kept: the demo's, or one a user made (connected, imported, edited;
        # targets imported without a master region yet count too).
        if not (database_configured() or Target.objects.exists()):
            call_command("import_glancesync_conf", str(DEMO_CONFIG), stdout=io.StringIO())
            MasterSettings.objects.filter(pk=1).update(cloud=f"{FILES_SCHEME}{path}?rate={DEMO_RATE_MB_S}", demo=True)
            self.stdout.write(
                "Demo configuration imported into the database (edit it in the admin; "
                "Connect a cloud in the console replaces it with your OpenStack)."
            )
        user_model = get_user_model()
        if not user_model.objects.exists():
            password = secrets.token_urlsafe(12)
            user = user_model.objects.create_user("demo", password=password, is_staff=True)
            user.groups.add(Group.objects.get(name="operator"))
            user.user_permissions.add(*Permission.objects.filter(content_type__app_label="sync"))
            self.stdout.write(
                f"Demo operator account created: user 'demo', password '{password}' "
                "(shown once; `python manage.py changepassword demo` sets another)."
            )

    def _hints(self, path: Path) -> None:
        config = _shown(DEMO_CONFIG)
        self.stdout.write("Try:")
        self.stdout.write(
            f"  python manage.py glancesync --config-file {config} --cloud files:{path} --show-status master: partner:"
        )
        if console_cloud_folder() != path:
            self.stdout.write(
                f"The console reads GLANCESYNC_CLOUD={settings.GLANCESYNC_CLOUD}; "
                f"set GLANCESYNC_CLOUD=files:{path} to show this copy."
            )
        if Path(settings.GLANCESYNC_CONFIG_FILE).absolute() != DEMO_CONFIG:
            self.stdout.write(
                f"The console reads GLANCESYNC_CONFIG={settings.GLANCESYNC_CONFIG_FILE}; "
                f"the demo's configuration is {DEMO_CONFIG}."
            )


def _embedded_default() -> bool:
    engine = settings.DATABASES["default"]["ENGINE"]
    return engine.endswith("sqlite3") and settings.GLANCESYNC_CLOUD.startswith(FILES_SCHEME)


def _has_backups(path: Path) -> bool:
    if not os.path.lexists(path):
        return False
    if not path.is_dir():
        raise CommandError(f"{path} exists and is not a folder: choose another --path")
    return any(is_backup_file(name) for name in os.listdir(path))


def _copy_demo(path: Path) -> int:
    """Copy the demo CSVs; a new folder appears complete or not at all (built aside, then renamed)."""
    files = demo_files()
    if path.is_dir():  # an existing folder without backups: fill it if it is empty
        if os.listdir(path):
            raise CommandError(f"{path} holds other files but no backup_*.csv: not copying the demo into it")
        for source in files:
            shutil.copyfile(source, path / source.name)
        return len(files)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        for source in files:
            shutil.copyfile(source, scratch / source.name)
        scratch.chmod(0o755)
        os.rename(scratch, path)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return len(files)


def _remove_demo_folder(path: Path) -> None:
    """Delete a demo folder file by file, refusing anything that is not only backup_*.csv files."""
    if path.is_symlink() or not path.is_dir():
        raise CommandError(f"{path} is not a folder: refusing to remove it")
    names = os.listdir(path)
    foreign = sorted(
        n for n in names if not (is_backup_file(n) and (path / n).is_file() and not (path / n).is_symlink())
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise CommandError(
            f"{path} holds more than backup_*.csv files ({shown}): refusing to remove it; "
            "remove it yourself or choose another --path"
        )
    for name in names:
        (path / name).unlink()
    path.rmdir()


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it (the usual manage.py case)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
