"""Hostile input through the site: names that are markup, oversized bodies, traversal in file names."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from sync.models import ApiToken, ImageState, RegionSnapshot
from sync.tasks import refresh_status
from tests.conftest import user_with_role

pytestmark = pytest.mark.django_db
HOSTILE_NAME = "<script>alert(1)</script>=cmd|' /C calc'!A0"


@pytest.fixture
def hostile_snapshot(demo_cloud):
    master = demo_cloud / "backup_Madrid.csv"
    owner = "6f1c2b9e4a7d4c0e8b3a5d9f2e1c7a40"
    row = f"Madrid,\"{HOSTILE_NAME}\",evil-id,active,1234,c0ffee,{owner},True,\"{{'type': 'baseimage'}}\""
    master.write_text(master.read_text().rstrip("\r\n") + "\r\n" + row + "\r\n")
    refresh_status()
    assert ImageState.objects.filter(image_name=HOSTILE_NAME).exists()


def test_image_names_are_escaped_on_every_page(viewer_client, hostile_snapshot):
    for url in ("/", "/regions/Bilbao/", "/matrix/", "/matrix/?q=script", "/preview/?region=Bilbao"):
        html = viewer_client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in html, url
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in viewer_client.get("/regions/Bilbao/").content.decode()


def test_api_answers_carry_names_as_json_strings(client, hostile_snapshot, django_user_model):
    _, token = ApiToken.issue(user_with_role(django_user_model, "vera", "viewer"), "t")
    response = client.get("/api/v1/regions/Bilbao", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response["Content-Type"].startswith("application/json")
    assert HOSTILE_NAME in [image["name"] for image in response.json()["images"]]


def test_an_oversized_api_body_is_refused_with_413(client, django_user_model, demo_cloud):
    refresh_status()
    _, token = ApiToken.issue(user_with_role(django_user_model, "otto", "operator"), "t")
    body = json.dumps({"regions": ["Bilbao"] * 400_000})  # ~4 MB, over Django's 2.5 MB limit
    response = client.post("/api/v1/runs", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


def test_an_oversized_form_is_refused_and_nothing_is_started(operator_client, demo_cloud):
    refresh_status()
    response = operator_client.post(reverse("sync:start_run"), {"region": ["Bilbao"] * 2000})
    assert response.status_code == 400
    from sync.models import SyncRun

    assert not SyncRun.objects.exists()


@pytest.mark.parametrize("region", ["../../etc/passwd", "Bilbao/../../x", "%2e%2e", "a" * 5000, "Bilbao\x00"])
def test_strange_region_names_are_just_unknown(viewer_client, demo_cloud, region):
    refresh_status()
    assert RegionSnapshot.objects.exists()
    assert viewer_client.get(f"/regions/{region}/").status_code in (400, 404)
