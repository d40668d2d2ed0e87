"""The admin's "test connection" and "discover regions" actions against the real Keystone + Glance stack."""

import pytest
from django.urls import reverse

from sync.models import MasterSettings, Region, Target

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def openstack_target(realstack, settings, tmp_path):
    settings.DATA_DIR = tmp_path  # the Fernet key file of the stored password
    MasterSettings.objects.update_or_create(pk=1, defaults={"cloud": "openstack", "master_region": "RegionOne"})

    def make(password):
        return Target.objects.create(
            name="master", auth_url=realstack.source_auth_url, user="admin", password=password, project_name="admin"
        )

    return make


def post_action(admin_client, action, target):
    url = reverse("admin:sync_target_changelist")
    response = admin_client.post(url, {"action": action, "_selected_action": [target.pk]}, follow=True)
    return response.content.decode(), "\n".join(str(m) for m in response.context["messages"])


def test_it_lists_the_image_regions_of_a_real_keystone(admin_client, openstack_target, realstack):
    target = openstack_target(realstack.passwords["source"])
    _, messages = post_action(admin_client, "test_connection", target)
    assert "master: OK, image regions: RegionOne, RegionThree, RegionTwo" in messages
    post_action(admin_client, "discover_regions", target)
    assert sorted(region.name for region in Region.objects.filter(target=target)) == [
        "RegionOne",
        "RegionThree",
        "RegionTwo",
    ]


def test_a_wrong_password_gives_a_clear_message_without_the_secret(admin_client, openstack_target):
    secret = "N0t-the-Passw0rd"
    page, messages = post_action(admin_client, "test_connection", openstack_target(secret))
    assert "master: failed:" in messages and "401" in messages
    assert secret not in page
