"""Build the engine's SyncConfig from the configuration stored in the database (issue #4)."""

from __future__ import annotations

from sync.engine.config import ConfigError
from sync.engine.model import SyncConfig
from sync.models import Defaults, MasterSettings, Region, Target


def load_db_config() -> SyncConfig:
    """The whole configuration: every target (a `master` one always exists, as with a file), the master
    settings, and `preferable_order` from the enabled regions by position (then target and region name).

    Raises ConfigError when no master region is set.
    """
    defaults = Defaults.load()
    main = MasterSettings.load()
    targets = {target.name: target.to_policy(defaults) for target in Target.objects.prefetch_related("decisions").all()}
    if "master" not in targets:
        targets["master"] = Target(name="master").to_policy(defaults)
    if not main.master_region:
        raise ConfigError("database configuration: no master region (set it in the admin: Master settings)")
    order = [
        region.fullname
        for region in Region.objects.filter(enabled=True)
        .select_related("target")
        .order_by("position", "target__name", "name")
    ]
    return SyncConfig(
        master_region=main.master_region,
        targets=targets,
        preferable_order=order,
        max_children=main.max_children,
        images_dir=main.images_dir or None,
    )
