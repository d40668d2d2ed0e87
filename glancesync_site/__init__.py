"""Django project package for the GlanceSync console."""
