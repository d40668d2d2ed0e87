"""Root URL configuration: the admin, then the sync app at the site root."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("sync.urls")),
]
