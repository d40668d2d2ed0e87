"""What the import commands (import_glancesync_conf, import_clouds_yaml) print once they are done."""

from __future__ import annotations


def report_changes(write, path: str, changes: list[str], dry_run: bool, unchanged: str) -> None:
    """Each change (`would ...` in a dry run), then one summary line; `unchanged` ends the no-change line."""
    prefix = "would " if dry_run else ""
    for change in changes:
        write(prefix + change)
    if not changes:
        write(f"{path}: no changes ({unchanged})")
    elif dry_run:
        write(f"dry run: {len(changes)} change(s), nothing saved")
    else:
        write(f"{path}: imported, {len(changes)} change(s)")
