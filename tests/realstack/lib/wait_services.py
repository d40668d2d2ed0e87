"""Wait until every started service answers HTTP; on failure name it and show the tail of its log.

usage: wait_services.py --timeout SECONDS --service NAME URL PID_FILE LOG_FILE [--service ...]

A service counts as up when its URL gives any HTTP answer below 500 (Glance's version document is a
300 Multiple Choices).  Each request has a short timeout: a Keystone whose worker crash-loops keeps its port
open but never answers.  A service whose gunicorn master has exited fails at once instead of at the deadline.
Only the standard library is used, so that no curl is needed on the machine.
"""

import argparse
import os
import sys
import time
import urllib.error
import urllib.request

LOG_TAIL_LINES = 40


def answers(url):
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:  # refused, reset, timed out
        return False


def alive(pid_file):
    try:
        with open(pid_file) as f:
            os.kill(int(f.read().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def tail(path, lines=LOG_TAIL_LINES):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as exc:
        return f"(no log: {exc})\n"


def report(name, url, log_file, problem):
    print(f"wait_services: {name} ({url}) {problem}; last lines of {log_file}:", file=sys.stderr)
    print(tail(log_file), end="", file=sys.stderr)
    print(f"--- end of {log_file}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--service", nargs=4, action="append", metavar=("NAME", "URL", "PID_FILE", "LOG_FILE"))
    args = parser.parse_args()
    pending = list(args.service)
    deadline = time.monotonic() + args.timeout
    failed = False
    while pending:
        for service in list(pending):
            name, url, pid_file, log_file = service
            if answers(url):
                pending.remove(service)
            elif not alive(pid_file):
                report(name, url, log_file, "exited during start-up")
                pending.remove(service)
                failed = True
        if pending and time.monotonic() > deadline:
            for name, url, _pid_file, log_file in pending:
                report(name, url, log_file, f"did not answer within {args.timeout:.0f} s")
            sys.exit(1)
        if pending:
            time.sleep(0.2)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
