"""URLs of the GlanceSync console, mounted at the site root."""

app_name = "sync"

urlpatterns = []
