"""GlanceSync: keeps OpenStack Glance images in step across regions and clouds."""

__version__ = "0.5.0"
