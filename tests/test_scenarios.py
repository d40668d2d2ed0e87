"""Scenario cases (tests/scenarios/ and ../shared/scenarios/) judged through the glancesync CLI.

A case folder holds `config`, `regions`, `initial/`, `result/`, `status_pre/`, `status_post/` (see
tests/scenarios/README.md). Each case is judged exactly like ../shared/tools/scenario_check.py does it:

1. copy `initial/` to a scratch folder, the file cloud;
2. for each region of `regions`: `--show-status REGION` must print `status_pre/<region>.csv`;
3. one sync of all the regions, in order;
4. the cloud must hold the regions of `result/`, with the same images (fields compared, properties as dicts);
5. for each region: `--show-status REGION` must print `status_post/<region>.csv`.

The CLI runs in-process (call_command), which is much faster than one subprocess per call; one test also runs the
reference judge as a subprocess on the shared cases, to cover that path.
"""

from __future__ import annotations

import ast
import csv
import io
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

ROOT = Path(__file__).resolve().parents[1]
OWN_CASES = Path(__file__).resolve().parent / "scenarios"
SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_CASES = SHARED / "scenarios"
SCENARIO_CHECK = SHARED / "tools" / "scenario_check.py"

# "own/<case>" or "shared/<case>" -> reason. Only for a clear engine bug, with the case's expectation kept as derived.
XFAIL: dict[str, str] = {}

# One image as the judge compares it: region, name, status, size, checksum, owner, public, properties.
ImageFields = tuple[str, str, str, int, str, str, bool, dict]


def case_dirs(base: Path) -> list[Path]:
    if not base.is_dir():
        return []
    return sorted(d for d in base.iterdir() if d.is_dir() and (d / "regions").is_file())


def case_params() -> list:
    params = []
    for prefix, base in (("own", OWN_CASES), ("shared", SHARED_CASES)):
        dirs = case_dirs(base)
        if not dirs:
            reason = f"no scenario cases in {base}"
            params.append(pytest.param(None, id=f"{prefix}/(none)", marks=pytest.mark.skip(reason=reason)))
        for d in dirs:
            case_id = f"{prefix}/{d.name}"
            marks = [pytest.mark.xfail(strict=True, reason=XFAIL[case_id])] if case_id in XFAIL else []
            params.append(pytest.param(d, id=case_id, marks=marks))
    return params


# --- reading case files (as scenario_check.py does) ---------------------------------------------------------


def rows_of(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return [r for r in csv.reader(f) if r]


def cloud_state(folder: Path) -> dict[str, dict[str, ImageFields]]:
    """region -> image id -> fields, from every backup_<region>.csv of a folder."""
    state = {}
    for path in sorted(folder.iterdir()):
        name = path.name
        if not (name.startswith("backup_") and name.endswith(".csv")):
            continue
        images = {}
        for r in rows_of(path):
            props = ast.literal_eval(r[8]) if len(r) > 8 and r[8].strip() else {}
            images[r[2]] = (r[0], r[1], r[3], int(r[4] or 0), r[5], r[6], r[7].strip() == "True", props)
        state[name[len("backup_") : -len(".csv")]] = images
    return state


def status_lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


def expected_status(case: Path, phase: str, region: str) -> list[str]:
    name = region[len("master:") :] if region.startswith("master:") else region
    path = case / phase / f"{name}.csv"
    return status_lines(path.read_text()) if path.exists() else []


def state_differences(expected: dict, got: dict) -> list[str]:
    problems = []
    for region in sorted(set(expected) | set(got)):
        e, g = expected.get(region), got.get(region)
        if e == g:
            continue
        if e is None or g is None:
            problems.append(f"result: region {region} {'missing' if g is None else 'unexpected'}")
            continue
        for image_id in sorted(set(e) | set(g)):
            if e.get(image_id) != g.get(image_id):
                problems.append(f"result {region} id {image_id}: expected {e.get(image_id)} got {g.get(image_id)}")
    return problems


# --- running the CLI in-process ------------------------------------------------------------------------------


class Cli:
    """`manage.py glancesync --config-file CASE/config --cloud files:SCRATCH ...`, in-process."""

    def __init__(self, case: Path, scratch: Path, from_database: bool = False) -> None:
        config = [] if from_database else ["--config-file", str(case / "config")]
        self.base = [*config, "--cloud", f"files:{scratch}"]

    def __call__(self, *args: str) -> tuple[str, str | None]:
        """(stdout, None) on success, (stdout, error message) when the command fails."""
        out, err = io.StringIO(), io.StringIO()
        try:
            call_command("glancesync", *self.base, *args, stdout=out, stderr=err)
        except CommandError as error:
            return out.getvalue(), f"CommandError: {error} {err.getvalue().strip()[-300:]}"
        return out.getvalue(), None


def scratch_cloud(case: Path, tmp_path: Path) -> Path:
    """A writable copy of `initial/` (copyfile: the shared cases are read-only and copytree keeps modes)."""
    cloud = tmp_path / "cloud"
    cloud.mkdir()
    for path in sorted((case / "initial").iterdir()):
        if path.is_file():
            shutil.copyfile(path, cloud / path.name)
    return cloud


def judge(case: Path, tmp_path: Path, from_database: bool = False) -> list[str]:
    regions = (case / "regions").read_text().split()
    cloud = scratch_cloud(case, tmp_path)
    cli = Cli(case, cloud, from_database)
    problems = []
    for phase in ("status_pre", "sync", "status_post"):
        if phase == "sync":
            _, error = cli(*regions)
            if error:
                problems.append(f"sync {' '.join(regions)}: {error}")
            problems += state_differences(cloud_state(case / "result"), cloud_state(cloud))
            continue
        for region in regions:
            out, error = cli("--show-status", region)
            expected, got = expected_status(case, phase, region), status_lines(out)
            if error or expected != got:
                problems.append(f"{phase} {region}: expected {expected} got {got}" + (f" ({error})" if error else ""))
    return problems


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """Run in a scratch working directory, without environment settings that would replace the case's own."""
    monkeypatch.chdir(tmp_path)
    for name in ("GLANCESYNC_CONFIG", "GLANCESYNC_CLOUD"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.mark.parametrize("case", case_params())
def test_scenario(case, scratch):
    problems = judge(case, scratch)
    assert not problems, f"case {case.name}:\n  " + "\n  ".join(problems)


@pytest.mark.django_db
@pytest.mark.parametrize("case", case_params())
def test_scenario_with_its_config_imported_into_the_database(case, scratch, settings):
    """`manage.py glancesync` without --config-file reads the configuration from the database."""
    settings.DATA_DIR = scratch / "data"  # the Fernet key file of the imported passwords
    call_command("import_glancesync_conf", str(case / "config"), stdout=io.StringIO())
    problems = judge(case, scratch, from_database=True)
    assert not problems, f"case {case.name}:\n  " + "\n  ".join(problems)


def expanded_cases() -> list:
    dirs = [d for d in case_dirs(OWN_CASES) if (d / "regions_expanded").is_file()]
    return [pytest.param(d, id=f"own/{d.name}") for d in dirs]


@pytest.mark.parametrize("case", expanded_cases())
def test_expanded_region_arguments_sync_the_explicit_list_in_order(case, scratch):
    """`regions_expanded` (e.g. `master: other:`) must sync exactly the `regions` list, in that order."""
    regions = (case / "regions").read_text().split()
    cloud = scratch_cloud(case, scratch)
    out, error = Cli(case, cloud)(*(case / "regions_expanded").read_text().split())
    assert error is None, error
    lines = [line for line in out.splitlines() if line.startswith("======") and not line.startswith("======Master")]
    synced = [line[len("======") :] for line in lines]
    assert synced == regions, f"sync order: expected {regions} got {synced}"
    problems = state_differences(cloud_state(case / "result"), cloud_state(cloud))
    assert not problems, "\n  ".join(problems)


def warning_cases() -> list:
    dirs = [d for d in case_dirs(OWN_CASES) if (d / "warnings").is_file()]
    return [pytest.param(d, id=f"own/{d.name}") for d in dirs]


@pytest.mark.parametrize("case", warning_cases())
def test_sync_logs_exactly_the_expected_warnings(case, scratch):
    """The original's warning tests: the sync logs exactly these warnings (each line a prefix)."""
    cloud = scratch_cloud(case, scratch)
    out, error = Cli(case, cloud)(*(case / "regions").read_text().split())
    assert error is None, error
    expected = (case / "warnings").read_text().splitlines()
    got = [line[len("WARNING:") :] for line in out.splitlines() if line.startswith("WARNING:")]
    assert len(got) == len(expected) and all(g.startswith(e) for g, e in zip(got, expected, strict=True)), (
        f"warnings: expected {expected} got {got}"
    )


@pytest.mark.skipif(not SCENARIO_CHECK.is_file() or not case_dirs(SHARED_CASES), reason="no ../shared judge or cases")
def test_the_reference_judge_passes_the_shared_cases_through_the_cli_subprocess():
    """../shared/tools/scenario_check.py, one run per case, as many at once as there are CPUs."""
    env = {k: v for k, v in os.environ.items() if k not in ("GLANCESYNC_CONFIG", "GLANCESYNC_CLOUD")}
    command = [sys.executable, str(SCENARIO_CHECK), sys.executable]

    def check(case: Path) -> subprocess.CompletedProcess:
        return subprocess.run([*command, str(case)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        runs = list(pool.map(check, case_dirs(SHARED_CASES)))
    failures = [run.stdout + run.stderr for run in runs if run.returncode != 0]
    assert not failures, "\n".join(failures)
