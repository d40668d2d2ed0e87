"""Integration tests run against the real Keystone + Glance stack of tests/realstack (fixture `realstack`)."""

from tests.realstack.stack import realstack  # noqa: F401  (re-exported fixture)
