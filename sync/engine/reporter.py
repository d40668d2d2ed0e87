"""How the engine tells the world what it does: log lines and upload progress, per region."""

from __future__ import annotations

import logging

CLIENT_LOGGER = "GlanceSync-Client"  # the original's logger name; operators' log filters use it


class Cancelled(BaseException):
    """Raised by a reporter to stop a region's sync (a cancel request, a lost lease).

    A BaseException, like KeyboardInterrupt: drivers clean up (delete the image being uploaded) and let it
    through instead of turning it into a region error."""


class Reporter:
    """Receives the engine's messages. The default forwards them to the `GlanceSync-Client` logger."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(CLIENT_LOGGER)

    def log(self, level: int, message: str) -> None:
        self.logger.log(level, message)

    def info(self, message: str) -> None:
        self.log(logging.INFO, message)

    def warning(self, message: str) -> None:
        self.log(logging.WARNING, message)

    def error(self, message: str) -> None:
        self.log(logging.ERROR, message)

    def planned(self, images: int, size: int) -> None:
        """The region's work once its statuses are known: images to change, bytes to upload."""

    def image_started(self, image_name: str) -> None:
        """An image's update or upload begins; the place to raise Cancelled between images."""

    def image_done(self, image_name: str) -> None:
        """That image's update or upload is finished."""

    def progress(self, image_name: str, done: int, total: int) -> None:
        """Bytes of `image_name` transferred so far; called often while data streams (may raise Cancelled)."""

    def transfer_started(self, image_name: str, way: str) -> None:
        """The copy of `image_name` to the region begins, by `way`: "stream" or "glance-download"."""

    def stage(self, image_name: str, stage: str) -> None:
        """A server-side copy (glance-download) of `image_name` reached `stage` (IMPORT_STAGES); called again
        about every second while the region's Glance imports, with the same stage (may raise Cancelled)."""


class RecordingReporter(Reporter):
    """Keeps every (level, message) it receives; used by tests and by callers that store a region's log."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int, str]] = []

    def log(self, level: int, message: str) -> None:
        self.records.append((level, message))

    def messages(self, level: int | None = None) -> list[str]:
        return [m for lvl, m in self.records if level is None or lvl == level]
