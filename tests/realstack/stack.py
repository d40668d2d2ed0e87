"""The real OpenStack stack (tests/realstack/start.sh) from Python: start it if needed, connect, break it.

    from tests.realstack.stack import ensure_stack
    stack = ensure_stack()                       # starts it unless it is already up (once per session)
    conn = stack.connect("source", "RegionTwo")  # an openstack.connection.Connection
    stack.glancesync_conf                        # legacy config: master = source, target = target

Integration tests get it through the session fixture `realstack` (re-exported by tests/realstack/conftest.py;
another test package can import it into its own conftest.py the same way).  The fixture stops the stack at the
end of the session only if it started it, and not at all with GLANCESYNC_REALSTACK_KEEP=1.

Fault tests: `kill_glance("RegionTwo")` kills one Glance API server (SIGKILL by default, like a crash) and
waits until its port is closed; `start_glance("RegionTwo")` brings it back (start.sh restarts only what is
down).  Restore what you kill (try/finally): the stack is shared by the whole session.

The location comes from the same knob as start.sh (GLANCESYNC_REALSTACK_DIR); the rest (ports, passwords, pid
files) is read from the run/stack.json that start.sh writes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
START_SH = HERE / "start.sh"
STOP_SH = HERE / "stop.sh"
NAME_PREFIX = "glancesync-realstack-"  # gunicorn process title prefix, as RS_NAME_PREFIX in lib/settings.sh
START_TIMEOUT_S = 900  # a first start installs the venv from PyPI
LAYOUT = 2  # stack.json's "layout" as lib/write_files.py writes it: an older stack is started again (it upgrades)


class RealStackError(RuntimeError):
    """The stack could not be started or changed as asked; the message says which service and why."""


def image_bytes(size: int) -> bytes:
    """Random image data that Glance's format inspector takes for raw. Random bytes end their first sector with
    the MBR signature (55 AA) in one image of 65,536, and Glance 33 then refuses the upload (415) as a disk whose
    partition table fails its safety checks."""
    data = bytearray(os.urandom(size))
    if data[510:512] == b"\x55\xaa":
        data[511] = 0
    return bytes(data)


def base_dir() -> Path:
    """The stack's base dir: GLANCESYNC_REALSTACK_DIR or ~/.cache/glancesync-realstack (as lib/settings.sh)."""
    configured = os.environ.get("GLANCESYNC_REALSTACK_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "glancesync-realstack"


@dataclass(frozen=True)
class Service:
    """One gunicorn-run service: name is e.g. "source-keystone" or "source-glance-RegionTwo"."""

    name: str
    site: str  # "source" or "target"
    kind: str  # "keystone" or "glance"
    region: str | None  # Glance's region; None for Keystone
    port: int
    url: str
    pid_file: Path
    log_file: Path
    images_dir: Path | None  # Glance's file store
    glance_download: bool = False  # the Glance offers the glance-download import method

    def pid(self) -> int | None:
        """The pid of this service's gunicorn master if it is running (checked against its process title)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if f"{NAME_PREFIX}{self.name}".encode() in cmdline else None

    def answers(self, timeout: float = 2.0) -> bool:
        """True when the service gives an HTTP answer (any status below 500)."""
        try:
            with urllib.request.urlopen(self.url, timeout=timeout):
                return True
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except OSError:
            return False


@dataclass(frozen=True)
class StackInfo:
    base_dir: Path
    run_dir: Path
    clouds_yaml: Path
    glancesync_conf: Path
    source_env: Path
    target_env: Path
    ports: dict[str, int]  # service name -> port
    passwords: dict[str, str]  # "source", "target" (admin users), "glance_service"
    glance_stores: str  # "multi" or "legacy"
    services: dict[str, Service] = field(repr=False)
    started: bool = False  # True if ensure_stack() started (some of) it
    layout: int = 1  # what start.sh set up (see LAYOUT)

    @property
    def source_auth_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['source-keystone']}/v3"

    @property
    def target_auth_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['target-keystone']}/v3"

    def glance(self, region: str, site: str = "source") -> Service:
        try:
            return self.services[f"{site}-glance-{region}"]
        except KeyError:
            raise RealStackError(f"the {site} site has no Glance for region {region!r}") from None

    def connect(self, cloud: str = "source", region: str = "RegionOne"):
        """An openstack.connection.Connection for a cloud of clouds.yaml ("source"/"target") and region.

        Only this stack's clouds.yaml is read (not ~/.config/openstack, not OS_* variables).
        """
        import openstack.config
        import openstack.connection

        config = openstack.config.OpenStackConfig(
            config_files=[str(self.clouds_yaml)], secure_files=[], load_envvars=False
        )
        return openstack.connection.Connection(config=config.get_one(cloud=cloud, region_name=region))

    def is_up(self) -> bool:
        return all(service.pid() is not None and service.answers() for service in self.services.values())


def load_stack(directory: Path | None = None) -> StackInfo | None:
    """The stack described by run/stack.json under the base dir, or None if start.sh never completed there."""
    run_dir = (directory or base_dir()) / "run"
    try:
        raw = json.loads((run_dir / "stack.json").read_text())
    except FileNotFoundError:
        return None
    services = {
        name: Service(
            name=name,
            site=s["site"],
            kind=s["kind"],
            region=s["region"],
            port=s["port"],
            url=s["url"],
            pid_file=Path(s["pid_file"]),
            log_file=Path(s["log_file"]),
            images_dir=Path(s["images_dir"]) if s["images_dir"] else None,
            glance_download=bool(s.get("glance_download")),
        )
        for name, s in raw["services"].items()
    }
    return StackInfo(
        base_dir=Path(raw["base_dir"]),
        run_dir=Path(raw["run_dir"]),
        clouds_yaml=Path(raw["clouds_yaml"]),
        glancesync_conf=Path(raw["glancesync_conf"]),
        source_env=Path(raw["source_env"]),
        target_env=Path(raw["target_env"]),
        ports=raw["ports"],
        passwords=raw["passwords"],
        glance_stores=raw["glance_stores"],
        services=services,
        layout=raw.get("layout", 1),
    )


def _run_start_sh() -> None:
    try:
        result = subprocess.run(
            [str(START_SH)], capture_output=True, text=True, timeout=START_TIMEOUT_S, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise RealStackError(f"{START_SH} did not finish in {START_TIMEOUT_S} s") from exc
    sys.stderr.write(result.stderr)  # start.sh's progress log, shown by pytest with the captured output
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()
        raise RealStackError(f"{START_SH} failed (exit {result.returncode}):\n" + "\n".join(output[-60:]))


def ensure_stack() -> StackInfo:
    """The running stack; starts it (or the services of it that are down) with start.sh when needed."""
    info = load_stack()
    if info is not None and info.layout == LAYOUT and info.is_up():
        return info
    _run_start_sh()
    info = load_stack()
    if info is None:  # start.sh succeeded, so stack.json must be there: a different base dir?
        raise RealStackError(f"start.sh succeeded but {base_dir() / 'run' / 'stack.json'} is missing")
    return dataclasses.replace(info, started=True)


def stop_stack(purge: bool = False) -> None:
    """Stop every service of the stack (stop.sh), deleting its data with purge=True."""
    subprocess.run([str(STOP_SH), *(["--purge"] if purge else [])], check=True, capture_output=True, timeout=60)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def kill_service(info: StackInfo, name: str, sig: signal.Signals = signal.SIGKILL, timeout: float = 15) -> None:
    """Send `sig` to the service's process group (gunicorn master + worker); wait until its port is closed."""
    service = info.services[name]
    pid = service.pid()
    if pid is None:
        raise RealStackError(f"{name} is not running")
    os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while service.pid() is not None or _port_open(service.port):
        if time.monotonic() > deadline:
            raise RealStackError(f"{name} (pid {pid}) still runs {timeout} s after {sig.name}")
        time.sleep(0.1)


def kill_glance(region: str, site: str = "source", sig: signal.Signals = signal.SIGKILL) -> None:
    """Kill one Glance API server, e.g. kill_glance("RegionTwo"); SIGKILL (a crash) unless told otherwise."""
    info = load_stack()
    if info is None:
        raise RealStackError("the stack was never started")
    kill_service(info, info.glance(region, site).name, sig)


def start_glance(region: str, site: str = "source") -> StackInfo:
    """Start a Glance API server killed by kill_glance() again (start.sh restarts whatever is down)."""
    info = load_stack()
    if info is None:
        raise RealStackError("the stack was never started")
    info.glance(region, site)  # a clear error for an unknown region
    _run_start_sh()
    return info


@pytest.fixture(scope="session")
def realstack():
    """Session fixture: the running stack (StackInfo); stopped at the end only if this session started it."""
    info = ensure_stack()
    yield info
    if info.started and os.environ.get("GLANCESYNC_REALSTACK_KEEP") != "1":
        stop_stack()
