"""Schemathesis against /api/v1/openapi.json, in-process (WSGI): no 500 and every response as documented.

Bounded: a few dozen generated requests per operation, with an operator's token, on the demo snapshot.
"""

import pytest
import schemathesis
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from glancesync_site.wsgi import application
from sync.models import ApiToken, MasterSettings
from sync.tasks import refresh_status
from tests.conftest import DEMO, user_with_role

schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", application)


@pytest.fixture
def keep_connection():
    """As Django's test client does: a request must not close the test's database connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def token(db, demo_cloud, django_user_model, monkeypatch, keep_connection):
    monkeypatch.setattr("django_q.tasks.async_task", lambda *args, **kwargs: "task")  # no broker needed
    call_command("import_glancesync_conf", str(DEMO / "glancesync.conf"), stdout=None)
    MasterSettings.objects.filter(pk=1).update(cloud=f"files:{demo_cloud}")
    refresh_status()
    return ApiToken.issue(user_with_role(django_user_model, "otto", "operator"), "schemathesis")[1]


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_matches_its_openapi_document(case, token):
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"})
