"""Connect a cloud against the real Keystone + Glance of tests/realstack: a wrong password shows the error and
saves nothing, the right one connects, and the stack's own clouds.yaml connects both of its clouds."""

import pytest
from django.contrib.auth.models import Permission

from sync.connect_views import DRAFT_KEY
from sync.models import AuditEntry, MasterSettings, Region, RegionSnapshot, Target
from sync.tasks import refresh_status
from tests.conftest import role_group
from tests.test_connect import text

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def staff_client(client, django_user_model, settings, tmp_path):
    settings.DATA_DIR = tmp_path  # the Fernet key file of the stored password
    user = django_user_model.objects.create_user("stella", is_staff=True)
    user.groups.add(role_group("operator"))
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="sync"))
    client.force_login(user)
    return client


def by_hand(realstack, password):
    return {
        "source": "manual", "auth_url": realstack.source_auth_url, "identity_api_version": "3", "user": "admin",
        "password": password, "project_name": "admin", "user_domain": "Default", "project_domain": "Default",
    }  # fmt: skip


def test_it_connects_the_source_cloud_after_a_wrong_password(staff_client, realstack):
    wrong = "Wr0ng-Passw0rd-for-the-test"
    response = staff_client.post("/connect/", by_hand(realstack, wrong))
    page = text(response)
    assert response.status_code == 200 and "Connection test of master" in page
    assert "Keystone login: Keystone refused the login (HTTP 401): wrong user name, password or project" in page
    assert wrong not in response.content.decode() and "Traceback" not in response.content.decode()
    assert not Target.objects.exists() and not MasterSettings.objects.exists() and not AuditEntry.objects.exists()
    assert DRAFT_KEY not in staff_client.session

    assert staff_client.post("/connect/", by_hand(realstack, realstack.passwords["source"]))["Location"] == (
        "/connect/review/"
    )
    review = text(staff_client.get("/connect/review/"))
    assert "image endpoints in 3 region(s): RegionOne, RegionThree, RegionTwo" in review
    assert "Glance of RegionOne: http://127.0.0.1:" in review and "Glance of RegionTwo: http://127.0.0.1:" in review
    choices = {"master_region": "master:RegionOne", "regions_master": ["RegionOne", "RegionTwo"], "action": "save"}
    assert staff_client.post("/connect/review/", choices)["Location"] == "/"
    assert Target.objects.get().password == realstack.passwords["source"]
    assert MasterSettings.objects.get().master_region == "RegionOne"
    assert refresh_status().startswith("statuses of 2 of 2 regions refreshed")  # what the queued task does
    assert sorted(RegionSnapshot.objects.values_list("region", "error")) == [("RegionOne", ""), ("RegionTwo", "")]


def test_it_connects_the_clouds_yaml_of_the_stack(staff_client, realstack):
    response = staff_client.post("/connect/", {"source": "yaml", "text": realstack.clouds_yaml.read_text()})
    assert response["Location"] == "/connect/review/", text(response)
    review = text(staff_client.get("/connect/review/"))
    assert "Connection test of source" in review and "Connection test of target" in review
    choices = {
        "master_region": "source:RegionOne", "regions_source": ["RegionOne", "RegionTwo"],
        "regions_target": ["RegionOne"], "action": "save",
    }  # fmt: skip
    assert staff_client.post("/connect/review/", choices)["Location"] == "/"
    assert sorted(r.fullname for r in Region.objects.select_related("target")) == [
        "RegionOne",
        "RegionTwo",
        "target:RegionOne",
    ]
    assert refresh_status().startswith("statuses of 3 of 3 regions refreshed")
