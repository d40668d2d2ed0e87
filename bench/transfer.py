"""Glance-to-Glance transfer benchmark against the real stack of tests/realstack.

Usage: .venv/bin/python bench/transfer.py [--size-mb 1024] [--runs 3]

One image of --size-mb random bytes is put in the source cloud's RegionOne, then copied to RegionTwo
(another Glance server of the same Keystone) --runs times by each method:

- product: GlanceSync's sync of that region (OpenStack driver: streamed, hashed, verified);
- glance-download: GlanceSync's sync of RegionThree, whose Glance offers glance-download: it imports the image
           from RegionOne's Glance itself; GlanceSync creates the record, waits, verifies and sets the metadata;
- stream-three: the product's streamed sync of that same RegionThree (transfer = stream), the like-for-like
           reference of glance-download;
- raw:     `curl` download piped into `curl` upload with the same token, the physical floor here (curl
           sends a pipe with chunked encoding);
- raw-length: the same pipe, told the length: the same request as the product's (a Content-Length);
- naive:   openstacksdk's download_image() into memory, then create_image(data=bytes).

Each run is a fresh child process, so its peak RSS (ru_maxrss) is its own; RSS growth is the peak minus
the process's RSS after its imports. Reports medians, throughputs and the product's ratio to the faster raw copy.
Goals (issue #3): product >= 0.9 x raw throughput; product RSS growth <= 64 MiB.

Then one more run of product and glance-download each under `strace -f` counts the bytes the GlanceSync process
reads from network sockets (read/readv/recv*/recvfrom/recvmsg on TCP sockets: /proc/<pid>/io's rchar misses
recv), per GiB synced. Goal (issue #18): glance-download receives <= 1 % of what streaming receives.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.realstack.stack import StackInfo, ensure_stack  # noqa: E402

NAME = "bench-transfer-image"
MIB = 1024 * 1024


def rss_kib() -> int:
    """Current resident set size of this process (KiB), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def peak_kib(children: bool = False) -> int:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss


# -- the three methods, each run in a child process (`--measure METHOD`) ------------------------------


def product_sync(stack: StackInfo, region: str, *overrides: tuple[str, str], imported: bool = False) -> dict:
    from sync.clouds.openstack import OpenStackCloud
    from sync.engine.config import load_config
    from sync.engine.glancesync import GlanceSync
    from sync.engine.reporter import RecordingReporter

    condition = [("metadata_condition", f"image.name == '{NAME}'"), *overrides]
    reporter = RecordingReporter()
    engine = GlanceSync(load_config(str(stack.glancesync_conf), condition), OpenStackCloud(), reporter)
    engine.region_names("master")  # authenticate before the clock starts, as the other methods do
    base = rss_kib()
    start = time.perf_counter()
    result = engine.sync_region(region)
    seconds = time.perf_counter() - start
    if not result.ok or result.counters["uploads"] != 1:
        raise SystemExit(f"product sync of {region} failed: {result.error or result.counters}")
    log = "\n".join(reporter.messages())
    if imported != ("(glance-download)" in log) or "Streaming" in log:
        raise SystemExit(f"the sync of {region} did not copy the way asked (glance-download: {imported}):\n{log}")
    return {"seconds": seconds, "base_kib": base, "peak_kib": peak_kib()}


def measure_product(stack: StackInfo, master_id: str) -> dict:
    return product_sync(stack, "RegionTwo")


def measure_glance_download(stack: StackInfo, master_id: str) -> dict:
    return product_sync(stack, "RegionThree", imported=True)


def measure_stream_three(stack: StackInfo, master_id: str) -> dict:
    return product_sync(stack, "RegionThree", ("master.transfer", "stream"))


def raw_copy(stack: StackInfo, master_id: str, known_length: bool) -> dict:
    """curl | curl between the two Glance servers.  curl uploads a pipe chunked unless told the length."""
    source, two = stack.connect("source", "RegionOne"), stack.connect("source", "RegionTwo")
    size = source.image.get_image(master_id).size
    created = two.image.post("/images", json={"name": NAME, "disk_format": "raw", "container_format": "bare"})
    target_id = created.json()["id"]
    get_url = source.image.get_endpoint().rstrip("/") + f"/images/{master_id}/file"
    put_url = two.image.get_endpoint().rstrip("/") + f"/images/{target_id}/file"
    length = f"-H 'Transfer-Encoding:' -H 'Content-Length: {size}'" if known_length else ""
    with tempfile.NamedTemporaryFile("w", suffix=".headers") as headers:  # mode 0600: the token stays out of ps
        headers.write(f"X-Auth-Token: {source.session.get_token()}\n")
        headers.flush()
        pipeline = (
            f"curl -sSf -H @{headers.name} '{get_url}' | curl -sSf -T - -X PUT {length} -H @{headers.name} "
            f"-H 'Content-Type: application/octet-stream' '{put_url}'"
        )
        start = time.perf_counter()
        subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], check=True)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "base_kib": 0, "peak_kib": peak_kib(children=True)}


def measure_raw(stack: StackInfo, master_id: str) -> dict:
    return raw_copy(stack, master_id, known_length=False)


def measure_raw_length(stack: StackInfo, master_id: str) -> dict:
    return raw_copy(stack, master_id, known_length=True)


def measure_naive(stack: StackInfo, master_id: str) -> dict:
    source, two = stack.connect("source", "RegionOne"), stack.connect("source", "RegionTwo")
    source.image.get_image(master_id)  # authenticate before the clock starts
    two.image.get_endpoint()
    base = rss_kib()
    start = time.perf_counter()
    data = source.image.download_image(master_id).content
    two.image.create_image(name=NAME, data=data, disk_format="raw", container_format="bare", wait=True)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "base_kib": base, "peak_kib": peak_kib()}


MEASURES = {
    "product": measure_product,
    "glance-download": measure_glance_download,
    "stream-three": measure_stream_three,
    "raw": measure_raw,
    "raw-length": measure_raw_length,
    "naive": measure_naive,
}


# -- orchestration --------------------------------------------------------------------------------------


def remove_copies(stack: StackInfo) -> None:
    for region in ("RegionTwo", "RegionThree"):
        conn = stack.connect("source", region)
        for image in list(conn.image.images(name=NAME)):
            conn.image.delete_image(image.id)


def master_image(stack: StackInfo, size_mb: int) -> tuple[str, int]:
    """The benchmark image in RegionOne (reused when it has the asked size), and its size in bytes."""
    source = stack.connect("source", "RegionOne")
    size = size_mb * MIB
    for image in source.image.images(name=NAME):
        if image.size == size and image.status == "active":
            return image.id, size
        source.image.delete_image(image.id)
    with tempfile.NamedTemporaryFile(dir=os.environ.get("TMPDIR")) as data:
        for _ in range(size_mb):
            data.write(os.urandom(MIB))
        data.flush()
        image = source.image.create_image(
            name=NAME, filename=data.name, disk_format="raw", container_format="bare", wait=True
        )
    return image.id, size


def largest_size_mb(wanted_mb: int) -> int:
    """The disk must hold the temporary file plus a copy in each of two Glance stores."""
    free_mb = shutil.disk_usage(tempfile.gettempdir()).free // MIB
    return max(16, min(wanted_mb, free_mb // 4))


def run_child(method: str, master_id: str) -> dict:
    command = [sys.executable, __file__, "--measure", method, "--master-id", master_id]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# A read from a network socket, as `strace -f -yy -s 0` prints it: `1234 read(7<TCP:[...]>, ""..., 1048576) = 65536`
# (a call another thread interrupted comes as `<unfinished ...>` and, later, `<... read resumed>... = N`).
SYSCALL = re.compile(r"^(?P<pid>\d+)\s+(?P<name>read|readv|recv|recvfrom|recvmsg)\((?P<fd>\d+)<(?P<kind>[A-Za-z0-9]+):")
RESUMED = re.compile(r"^(?P<pid>\d+)\s+<\.\.\. (?P<name>read|readv|recv|recvfrom|recvmsg) resumed>")
RESULT = re.compile(r"\)\s+=\s+(?P<bytes>\d+)")
NETWORK = {"TCP", "TCPv6", "UDP", "UDPv6"}


def socket_bytes(trace: str) -> int:
    """Bytes read from TCP/UDP sockets by every thread of the traced process (UNIX sockets and files aside)."""
    total, pending = 0, {}
    for line in trace.splitlines():
        call = SYSCALL.match(line)
        if call:
            network = call["kind"] in NETWORK
            if line.endswith("<unfinished ...>"):
                pending[call["pid"]] = network
                continue
        else:
            resumed = RESUMED.match(line)
            if not resumed:
                continue
            network = pending.pop(resumed["pid"], False)
        result = RESULT.search(line)
        if network and result:
            total += int(result["bytes"])
    return total


def traced_child(method: str, master_id: str) -> int:
    """One run of `method` under strace: the bytes its process received from the network."""
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "strace.txt"
        command = ["strace", "-f", "-qq", "-yy", "-s", "0", "-e", "trace=read,readv,recv,recvfrom,recvmsg",
                   "-e", "signal=none", "-o", str(trace),
                   sys.executable, __file__, "--measure", method, "--master-id", master_id]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True, text=True)
        return socket_bytes(trace.read_text())


def report(results: dict[str, list[dict]], size: int) -> None:
    runs = len(results["raw"])
    print(f"image: {size // MIB} MiB; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs; medians of {runs}")
    medians = {}
    for method, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        growth = statistics.median((r["peak_kib"] - r["base_kib"]) / 1024 for r in runs)
        growth_text = f"{growth:7.1f} MiB" if runs[0]["base_kib"] else "    n/a"  # curl: its own processes
        peak = statistics.median(r["peak_kib"] / 1024 for r in runs)
        medians[method] = seconds
        each = ", ".join(f"{r['seconds']:.2f}" for r in runs)
        print(
            f"  {method:15s} {seconds:7.2f} s  {size / MIB / seconds:7.1f} MiB/s  peak RSS {peak:7.1f} MiB"
            f"  (growth {growth_text})  runs: {each}"
        )
    floor = min(medians["raw"], medians["raw-length"])  # the faster raw copy
    ratio = floor / medians["product"]
    growth = statistics.median((r["peak_kib"] - r["base_kib"]) / 1024 for r in results["product"])
    verdict = "PASS" if ratio >= 0.9 else "FAIL"
    print(f"  product throughput / fastest raw throughput = {ratio:.2f} (goal >= 0.90: {verdict})")
    print(f"  product throughput / raw-length throughput = {medians['raw-length'] / medians['product']:.2f}")
    print(f"  product RSS growth = {growth:.1f} MiB (goal <= 64: {'PASS' if growth <= 64 else 'FAIL'})")
    print(f"  naive / product time = {medians['naive'] / medians['product']:.2f}")
    gd = medians["glance-download"]
    print(
        f"  glance-download / product time = {gd / medians['product']:.2f}; "
        f"glance-download / stream-three time = {gd / medians['stream-three']:.2f}"
    )


def report_bytes(received: dict[str, int], size: int) -> None:
    gib = size / (1024 * MIB)
    for method, count in received.items():
        print(
            f"  {method:15s} received {count / MIB:10.2f} MiB from the network = {count / gib / MIB:10.2f} MiB per GiB"
        )
    ratio = received["glance-download"] / received["product"]
    verdict = "PASS" if ratio <= 0.01 else "FAIL"
    print(f"  glance-download / product bytes received = {ratio:.5f} ({ratio:.3%}; goal <= 1 %: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--measure", choices=sorted(MEASURES), help=argparse.SUPPRESS)
    parser.add_argument("--master-id", help=argparse.SUPPRESS)
    args = parser.parse_args()
    stack = ensure_stack()
    if args.measure:
        print(json.dumps(MEASURES[args.measure](stack, args.master_id)))
        return
    size_mb = largest_size_mb(args.size_mb)
    if size_mb < args.size_mb:
        print(f"note: only {size_mb} MiB: the disk cannot hold {args.size_mb} MiB three times")
    master_id, size = master_image(stack, size_mb)
    results: dict[str, list[dict]] = {method: [] for method in MEASURES}
    for _ in range(args.runs):
        for method in results:  # interleaved, so a noisy moment hits every method alike
            remove_copies(stack)
            results[method].append(run_child(method, master_id))
    received = {}
    if shutil.which("strace"):
        for method in ("product", "glance-download"):  # one traced run each: strace slows the process down
            remove_copies(stack)
            received[method] = traced_child(method, master_id)
    remove_copies(stack)
    report(results, size)
    if received:
        report_bytes(received, size)
    else:
        print("  bytes received: not measured (strace not installed)")


if __name__ == "__main__":
    main()
