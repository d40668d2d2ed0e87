"""Region strings (`Region`, `master:Region`, `target:Region`, `target:`) and region lists (spec §5.9)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sync.engine.model import GlanceSyncError, SyncConfig


@dataclass(frozen=True)
class RegionRef:
    target: str
    name: str

    @property
    def fullname(self) -> str:
        """How the original names a region everywhere: bare for the master target, `target:name` otherwise."""
        return self.name if self.target == "master" else f"{self.target}:{self.name}"


def parse_region(text: str, config: SyncConfig) -> RegionRef:
    """`Burgos` and `master:Burgos` are master regions; `other:Madrid` is region Madrid of target other."""
    target, _, name = text.rpartition(":") if ":" in text else ("master", "", text)
    if not name or ":" in target:
        raise GlanceSyncError(f"bad region '{text}': use Region, master:Region or target:Region")
    if target not in config.targets:
        known = ", ".join(sorted(config.targets))
        raise GlanceSyncError(f"unknown target '{target}' in region '{text}' (targets: {known})")
    return RegionRef(target, name)


def target_regions(
    config: SyncConfig, target: str, region_names: Iterable[str], omit_master_region: bool = True
) -> list[str]:
    """Fullnames of a target's regions, minus its ignore_regions (and the master region for `master`)."""
    policy = config.targets[target]
    names = [n for n in region_names if n not in policy.ignore_regions]
    if target == "master":
        return [n for n in names if not (omit_master_region and n == config.master_region)]
    return [RegionRef(target, n).fullname for n in names]


def build_region_list(args: list[str], config: SyncConfig, regions_of: Callable[[str], list[str]]) -> list[str]:
    """Expand `target:` arguments and apply preferable_order to expanded lists (spec §5.9).

    `regions_of(target)` returns the bare region names of a target. A fully explicit list keeps the
    user's order, as in the original.
    """
    if not args:
        args = ["master:"]
    result: list[str] = []
    expanded = False
    for arg in args:
        if arg.endswith(":"):
            target = arg[:-1]
            if target not in config.targets:
                known = ", ".join(sorted(config.targets))
                raise GlanceSyncError(f"unknown target '{target}' in '{arg}' (targets: {known})")
            result.extend(target_regions(config, target, regions_of(target)))
            expanded = True
        else:
            result.append(arg)
    return apply_preferable_order(result, config.preferable_order) if expanded else result


def apply_preferable_order(regions: list[str], preferable_order: list[str]) -> list[str]:
    first = [r for r in preferable_order if r in regions]
    return first + [r for r in regions if r not in first]
