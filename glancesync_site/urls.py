"""Root URL configuration: the admin, login/logout, then the sync app at the site root."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from sync import health, metrics
from sync.api import api
from sync.keystone_login import LoginForm

urlpatterns = [
    path("admin/", admin.site.urls),
    # Only log in and out: no self-service password reset (it would need e-mail; admins reset passwords). The form
    # takes local and Keystone accounts (sync/keystone_login.py).
    path("accounts/login/", auth_views.LoginView.as_view(authentication_form=LoginForm), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/", api.urls),
    path("healthz", health.healthz, name="healthz"),  # no trailing slash: what probes are usually given
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),  # Prometheus: an API token, or an allowed network
    path("", include("sync.urls")),
]
