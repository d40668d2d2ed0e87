"""The Alerts page (viewers) and the overview's active problems."""

import pytest
from django.urls import reverse
from django.utils import timezone

from sync.models import Alert, AlertChannel, AlertDelivery, RegionSnapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivered():
    good = AlertChannel.objects.create(name="ops-mail", kind="email", recipients="a@example.org")
    bad = AlertChannel.objects.create(
        name="chat", kind="webhook", webhook_url="https://hooks.example.org/x", failing_since=timezone.now(),
        last_error="the webhook answered HTTP 500",
    )  # fmt: skip
    alert = Alert.objects.create(key="run:7", event="run_failed", title="GlanceSync run #7 failed", text="- Bilbao")
    AlertDelivery.objects.create(alert=alert, channel=good, state="sent", attempts=1)
    AlertDelivery.objects.create(
        alert=alert, channel=bad, state="failed", attempts=4, last_error="the webhook answered HTTP 500"
    )
    return alert


def test_it_lists_recent_alerts_with_each_channels_delivery(viewer_client, delivered, django_assert_max_num_queries):
    with django_assert_max_num_queries(10):
        response = viewer_client.get(reverse("sync:alerts"))
    page = response.content.decode()
    assert response.status_code == 200
    assert "GlanceSync run #7 failed" in page and "- Bilbao" in page
    assert "ops-mail:" in page and ">sent<" in page and ">failed<" in page and "(4 attempts)" in page
    assert "failing</span> since" in page and "hooks.example.org" not in page


def test_it_needs_a_login(client):
    response = client.get(reverse("sync:alerts"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_it_says_when_no_channel_is_set_up(viewer_client):
    page = viewer_client.get(reverse("sync:alerts")).content.decode()
    assert "No alert channel yet: nobody is told when something fails." in page


def test_the_overview_shows_unreadable_regions_and_failing_channels_first(viewer_client, delivered):
    RegionSnapshot.objects.create(
        region="Bilbao", target="master", computed_at=timezone.now(), error="Keystone unreachable",
        unreadable_since=timezone.now(), read_failures=3,
    )  # fmt: skip
    page = viewer_client.get(reverse("sync:overview")).content.decode()
    problems = page[page.index('id="active-problems"') : page.index("</ul>", page.index('id="active-problems"'))]
    assert "Region <a" in problems and "Bilbao</a> cannot be read since" in problems
    assert "Alert channel <a" in problems and "chat</a> is failing since" in problems
    assert "the webhook answered HTTP 500" in problems
    assert page.index('id="active-problems"') < page.index('id="overview-table"')


def test_the_overview_shows_no_problem_box_when_all_is_well(viewer_client):
    assert 'id="active-problems"' not in viewer_client.get(reverse("sync:overview")).content.decode()
