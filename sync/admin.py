"""Admin registrations for the sync app. None yet."""
