"""Integration tests run against the real Keystone + Glance stack of tests/realstack (fixture `realstack`)."""

import pytest

from tests.integration.regions import TEST_REGIONS, remove_region
from tests.realstack.stack import realstack  # noqa: F401  (re-exported fixture)


@pytest.fixture(scope="session", autouse=True)
def no_leftover_test_regions(realstack):  # noqa: F811
    """Remove test regions a killed run left in the stack, before any integration test lists regions."""
    for site, region in TEST_REGIONS:
        remove_region(realstack.connect(site, "RegionOne"), region)
