"""Fixtures of the real-stack integration tests: `realstack` (a StackInfo, see stack.py)."""

from tests.realstack.stack import realstack  # noqa: F401  (re-exported fixture)
