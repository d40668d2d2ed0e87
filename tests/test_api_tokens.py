"""The API tokens page: users make their own tokens (shown once), see and revoke them; the API honours that."""

import re

import pytest
from django.urls import reverse

from sync.models import ApiToken, AuditEntry
from tests.conftest import user_with_role

pytestmark = pytest.mark.django_db

URL = "/tokens/"


def make_token(client, name: str) -> str:
    response = client.post(URL, {"name": name})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    return re.search(r'id="new-token">([^<]+)<', response.content.decode()).group(1)


def test_it_makes_a_token_shown_once_that_the_api_accepts(viewer_client, viewer):
    token = make_token(viewer_client, "CI pipeline")
    stored = ApiToken.objects.get(user=viewer)
    assert (stored.name, stored.prefix) == ("CI pipeline", token[:8]) and stored.digest != token
    assert token not in viewer_client.get(URL).content.decode()  # once only
    assert AuditEntry.objects.filter(model="apitoken", action="create", username=viewer.username).exists()
    answer = viewer_client.get("/api/v1/regions", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert answer.status_code == 200


def test_a_viewer_token_can_read_but_not_change(client, django_user_model):
    client.force_login(user_with_role(django_user_model, "vic", "viewer"))
    token = make_token(client, "read only")
    client.logout()
    answer = client.post(
        "/api/v1/runs", {"regions": ["Bilbao"]}, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert answer.status_code == 403


def test_it_lists_only_my_tokens(viewer_client, viewer, operator):
    ApiToken.issue(viewer, "mine")
    ApiToken.issue(operator, "someone else's")
    page = viewer_client.get(reverse("sync:api_tokens")).content.decode()
    assert "mine" in page and "someone else" not in page


def test_a_token_needs_a_name(viewer_client):
    response = viewer_client.post(URL, {"name": "   "})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not ApiToken.objects.exists()


def test_it_revokes_my_token_and_the_api_refuses_it(viewer_client, viewer):
    token = make_token(viewer_client, "old laptop")
    stored = ApiToken.objects.get()
    response = viewer_client.post(reverse("sync:revoke_api_token", args=[stored.pk]))
    assert response.status_code == 302
    stored.refresh_from_db()
    assert stored.revoked
    assert viewer_client.get("/api/v1/regions", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
    assert AuditEntry.objects.filter(model="apitoken", action="change", changed_fields=["revoked"]).exists()


def test_it_never_revokes_someone_elses_token(viewer_client, operator):
    theirs, _ = ApiToken.issue(operator, "theirs")
    response = viewer_client.post(reverse("sync:revoke_api_token", args=[theirs.pk]))
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert not theirs.revoked


def test_it_answers_405_to_other_methods(viewer_client):
    assert viewer_client.put(URL).status_code == 405
    assert viewer_client.get(reverse("sync:revoke_api_token", args=[1])).status_code == 405


def test_it_needs_a_role(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("nobody"))
    assert client.get(URL).status_code == 403
    assert client.post(URL, {"name": "x"}).status_code == 403
    assert not ApiToken.objects.exists()
