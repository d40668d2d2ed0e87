"""Building the engine from the console's configuration: the database once it has a master region, else
the legacy glancesync.conf of settings.GLANCESYNC_CONFIG_FILE on settings.GLANCESYNC_CLOUD."""

from __future__ import annotations

import logging

from django.conf import settings

from sync.clouds import FILES_SCHEME, cloud_from_url
from sync.dbconfig import database_configured, load_db_config_with
from sync.engine.config import load_config
from sync.engine.glancesync import GlanceSync
from sync.engine.model import GlanceSyncError, SyncConfig
from sync.engine.reporter import RecordingReporter, Reporter
from sync.models import MasterSettings

logger = logging.getLogger(__name__)


class ConsoleError(Exception):
    """The configuration or the cloud cannot be read; the message is safe to show."""


def build_engine(reporter: Reporter | None = None) -> GlanceSync:
    """The engine, built per request: from the database configuration once it has a master region (its cloud
    from the master settings), else from settings.GLANCESYNC_CONFIG_FILE and settings.GLANCESYNC_CLOUD."""
    config: SyncConfig | None = None
    try:
        if database_configured():
            cloud_url = MasterSettings.load().cloud or settings.GLANCESYNC_CLOUD
            config = load_db_config_with([], require_credentials=not cloud_url.startswith(FILES_SCHEME))
        else:
            cloud_url = settings.GLANCESYNC_CLOUD
            files = cloud_url.startswith(FILES_SCHEME)
            config = load_config(settings.GLANCESYNC_CONFIG_FILE, require_credentials=not files)
        cloud = cloud_from_url(cloud_url, images_dir=config.images_dir)
        return GlanceSync(config, cloud, reporter or RecordingReporter())
    except Exception as error:
        raise ConsoleError(safe_message(error, config)) from error


def safe_message(error: Exception, config: SyncConfig | None) -> str:
    """One line for the page: engine errors as they are, others with their type; never a password."""
    message = str(error) if isinstance(error, GlanceSyncError) else f"{type(error).__name__}: {error}"
    for target in config.targets.values() if config else ():
        if target.password:
            message = message.replace(target.password, "********")
    if not isinstance(error, GlanceSyncError):  # unexpected: the traceback (which may quote secrets) only in DEBUG
        logger.error("Console cannot read the cloud: %s", message, exc_info=logger.isEnabledFor(logging.DEBUG))
    return message
