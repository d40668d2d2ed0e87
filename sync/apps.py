from django.apps import AppConfig


class SyncAppConfig(AppConfig):
    """The GlanceSync Django app (named SyncAppConfig so it never clashes with the engine's SyncConfig)."""

    name = "sync"
    verbose_name = "GlanceSync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sync import keystone_login, signals  # noqa: F401  (connect the login audit and session receivers)
