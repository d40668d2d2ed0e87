"""Write the client files for the running stack (called by start.sh; values come from its environment).

  clouds.yaml      clouds `source` (regions RegionOne, RegionTwo, RegionThree) and `target` (RegionOne)
  source.env       OS_* variables for the source site (RegionOne), for `source` in a shell
  target.env       the same for the target site
  glancesync.conf  the legacy GlanceSync configuration: master = source Keystone, target = target Keystone
  stack.json       everything tests/realstack/stack.py needs (ports, passwords, pid and log files)

Each file is replaced atomically, so a reader never sees half of one.
"""

import json
import os
import shlex
from pathlib import Path

import yaml

E = os.environ
RUN = Path(E["RS_RUN"])
SITES = {  # site -> (keystone port, admin password, [(region, glance port), ...])
    "source": (
        int(E["RS_SOURCE_KEYSTONE_PORT"]),
        E["RS_SOURCE_PASSWORD"],
        [
            ("RegionOne", int(E["RS_SOURCE_GLANCE1_PORT"])),
            ("RegionTwo", int(E["RS_SOURCE_GLANCE2_PORT"])),
            ("RegionThree", int(E["RS_SOURCE_GLANCE3_PORT"])),
        ],
    ),
    "target": (
        int(E["RS_TARGET_KEYSTONE_PORT"]),
        E["RS_TARGET_PASSWORD"],
        [("RegionOne", int(E["RS_TARGET_GLANCE_PORT"]))],
    ),
}


def auth_url(site):
    return f"http://127.0.0.1:{SITES[site][0]}/v3"


def write(name, text, mode=0o600):  # 0600: the files hold passwords
    path = RUN / name
    tmp = path.with_name(f".{name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
    return path


def clouds_yaml():
    clouds = {}
    for site, (_port, password, regions) in SITES.items():
        clouds[site] = {
            "auth": {
                "auth_url": auth_url(site),
                "username": "admin",
                "password": password,
                "project_name": "admin",
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            # `regions`, not `region_name`: with region_name: RegionOne openstacksdk refuses RegionTwo.
            # The first one is the default when no region_name is given.
            "regions": [region for region, _port in regions],
            "identity_api_version": 3,
            "image_api_version": 2,
        }
    return "# Written by tests/realstack/start.sh\n" + yaml.safe_dump({"clouds": clouds}, sort_keys=False)


def env_file(site):
    values = {
        "OS_AUTH_URL": auth_url(site),
        "OS_USERNAME": "admin",
        "OS_PASSWORD": SITES[site][1],
        "OS_PROJECT_NAME": "admin",
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_REGION_NAME": "RegionOne",
        "OS_IDENTITY_API_VERSION": "3",
        "OS_IMAGE_API_VERSION": "2",
    }
    lines = [f"export {key}={shlex.quote(value)}" for key, value in values.items()]
    return f"# {site} site of the real stack (tests/realstack/start.sh); use: . {RUN / (site + '.env')}\n" + (
        "\n".join(lines) + "\n"
    )


def glancesync_conf():
    return f"""\
# Legacy GlanceSync configuration for the real stack (written by tests/realstack/start.sh).
# master = the source site (regions RegionOne, RegionTwo, RegionThree); target = the independent target site.
[main]
master_region = RegionOne

[master]
user = admin
password = {SITES["source"][1]}
keystone_url = {auth_url("source")}
tenant = admin
use_keystone_v3 = True

[target]
user = admin
password = {SITES["target"][1]}
keystone_url = {auth_url("target")}
tenant = admin
use_keystone_v3 = True
"""


def stack_json():
    services = {}
    for site, (ks_port, _password, regions) in SITES.items():
        entries = [(f"{site}-keystone", "keystone", None, ks_port, f"http://127.0.0.1:{ks_port}/v3")]
        entries += [
            (f"{site}-glance-{region}", "glance", region, port, f"http://127.0.0.1:{port}/") for region, port in regions
        ]
        for name, kind, region, port, url in entries:
            directory = RUN / name
            services[name] = {
                "site": site,
                "kind": kind,
                "region": region,
                "port": port,
                "url": url,
                "dir": str(directory),
                "pid_file": str(directory / "service.pid"),
                "log_file": str(directory / "service.log"),
                "images_dir": str(directory / "images") if kind == "glance" else None,
                # start.sh configures glance-download on every Glance but this one
                "glance_download": kind == "glance" and name != "source-glance-RegionTwo",
            }
    info = {
        # What this start.sh sets up (stack.py's LAYOUT): 2 = RegionThree and glance-download (issue #18). A stack
        # described with an older layout is started again, which adds what it lacks.
        "layout": 2,
        "base_dir": E["RS_BASE"],
        "run_dir": str(RUN),
        "venv": E["RS_VENV"],
        "clouds_yaml": str(RUN / "clouds.yaml"),
        "glancesync_conf": str(RUN / "glancesync.conf"),
        "source_env": str(RUN / "source.env"),
        "target_env": str(RUN / "target.env"),
        "glance_stores": E["RS_GLANCE_STORES"],
        "ports": {name: service["port"] for name, service in services.items()},
        "passwords": {
            "source": SITES["source"][1],
            "target": SITES["target"][1],
            "glance_service": E["RS_GLANCE_PASSWORD"],
        },
        "services": services,
    }
    return json.dumps(info, indent=2) + "\n"


def main():
    write("clouds.yaml", clouds_yaml())
    for site in SITES:
        write(f"{site}.env", env_file(site))
    write("glancesync.conf", glancesync_conf())
    write("stack.json", stack_json())  # last: its presence means the other files are there too


if __name__ == "__main__":
    main()
