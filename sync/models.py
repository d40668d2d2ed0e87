"""Database models of the GlanceSync console (targets, regions, runs, image states). None yet."""
