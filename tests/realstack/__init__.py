"""A real OpenStack (Keystone + Glance from PyPI) on 127.0.0.1 for integration tests; see README.md."""
