"""URLs of the GlanceSync console, mounted at the site root."""

from django.urls import path

from sync import views

app_name = "sync"

urlpatterns = [
    path("", views.overview, name="overview"),
    # <path:...>: region names of other targets contain ':' (partner:Lisbon).
    path("regions/<path:region>/", views.region_detail, name="region_detail"),
]
