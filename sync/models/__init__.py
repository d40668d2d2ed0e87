"""Database models of the GlanceSync console, by domain (the README's architecture section):

- `configuration`: what `glancesync.conf` held — Defaults, MasterSettings, Target, Region, ChecksumDecision —
  and the AuditEntry of every change;
- `runs`: SyncRun, RegionRun, RegionLock, ClusterHeartbeat, SyncSchedule, Backup;
- `snapshot`: RegionSnapshot, ImageState, StatusRefresh, RefreshRequest;
- `access`: ApiToken, KeystoneIdentity (a user made by a Keystone login);
- `alerts`: AlertChannel, Alert, AlertDelivery.

Everything is importable from `sync.models`, as before the split.
"""

from sync.models.access import ApiToken, KeystoneIdentity
from sync.models.alerts import (
    CHANNEL_EVENTS,
    Alert,
    AlertChannel,
    AlertDelivery,
    AlertEvent,
    DeliveryState,
    default_channel_events,
)
from sync.models.configuration import (
    ANY,
    BUILTIN_OPTIONS,
    CSV_FIELDS,
    HEX_CHECKSUM,
    LOOSE_CHECKSUM,
    OPTION_FIELDS,
    REGION_NAME,
    SECRET_FIELDS,
    TARGET_NAME,
    AuditEntry,
    ChecksumDecision,
    Defaults,
    MasterSettings,
    Region,
    SingletonModel,
    Target,
    TargetOptions,
    checksums_must_be_hex,
    csv_items,
    is_set,
    normalise_csv,
    validate_checksum,
    validate_condition,
)
from sync.models.runs import (
    FINISHED_STATES,
    SCHEDULED_RUN,
    Backup,
    ClusterHeartbeat,
    RegionLock,
    RegionRun,
    RunState,
    SyncRun,
    SyncSchedule,
    SyncScheduleManager,
)
from sync.models.snapshot import (
    ImageState,
    RefreshRequest,
    RefreshRequestQuerySet,
    RegionSnapshot,
    RegionSnapshotQuerySet,
    StatusRefresh,
)

__all__ = [
    "ANY", "BUILTIN_OPTIONS", "CHANNEL_EVENTS", "CSV_FIELDS", "FINISHED_STATES", "HEX_CHECKSUM", "LOOSE_CHECKSUM",
    "OPTION_FIELDS", "REGION_NAME", "SCHEDULED_RUN", "SECRET_FIELDS", "TARGET_NAME", "Alert", "AlertChannel",
    "AlertDelivery", "AlertEvent", "ApiToken", "AuditEntry", "Backup", "ChecksumDecision", "ClusterHeartbeat",
    "Defaults", "DeliveryState", "ImageState", "MasterSettings", "RefreshRequest", "RefreshRequestQuerySet",
    "Region", "RegionLock", "RegionRun", "RegionSnapshot", "RegionSnapshotQuerySet", "RunState", "SingletonModel",
    "StatusRefresh", "SyncRun", "SyncSchedule", "SyncScheduleManager", "Target", "TargetOptions",
    "checksums_must_be_hex", "csv_items", "default_channel_events", "is_set", "normalise_csv", "validate_checksum",
    "validate_condition", "KeystoneIdentity",
]  # fmt: skip
