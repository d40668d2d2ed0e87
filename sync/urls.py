"""URLs of the GlanceSync console, mounted at the site root."""

from django.urls import path

from sync import connect_views, views

app_name = "sync"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("matrix/", views.matrix, name="matrix"),
    # <path:...>: region names of other targets contain ':' (partner:Lisbon).
    path("regions/<path:region>/", views.region_detail, name="region_detail"),
    path("refresh/", views.refresh_now, name="refresh_now"),
    path("runs/", views.run_list, name="run_list"),
    path("runs/start/", views.start_run, name="start_run"),
    path("runs/<int:run_id>/", views.run_detail, name="run_detail"),
    path("runs/<int:run_id>/cancel/", views.cancel_run, name="cancel_run"),
    path("conflicts/", views.conflicts, name="conflicts"),
    path("schedules/", views.schedules, name="schedules"),
    path("preview/", views.preview, name="preview"),
    path("preview/regions/<path:region>/", views.preview_region, name="preview_region"),
    path("backups/", views.backups, name="backups"),
    path("backups/make/", views.make_backup, name="make_backup"),
    path("backups/<int:backup_id>/zip/", views.backup_zip, name="backup_zip"),
    path("backups/<int:backup_id>/delete/", views.delete_backup, name="delete_backup"),
    path("backups/<int:backup_id>/files/<str:name>", views.backup_file, name="backup_file"),
    path("conflicts/decide/", views.decide_conflict, name="decide_conflict"),
    path("alerts/", views.alerts, name="alerts"),
    path("tokens/", views.api_tokens, name="api_tokens"),
    path("tokens/<int:token_id>/revoke/", views.revoke_api_token, name="revoke_api_token"),
    path("connect/", connect_views.connect, name="connect"),
    path("connect/review/", connect_views.connect_review, name="connect_review"),
    path("connect/cancel/", connect_views.connect_cancel, name="connect_cancel"),
]
