"""Root URL configuration: the admin, login/logout, then the sync app at the site root."""

from django.contrib import admin
from django.urls import include, path

from sync.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", api.urls),
    path("", include("sync.urls")),
]
