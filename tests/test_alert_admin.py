"""The admin of alert channels: a write-only webhook URL, the events and targets, the test alert, failing state."""

import pytest
from django.urls import reverse
from django.utils import timezone

from sync.models import CHANNEL_EVENTS, Alert, AlertChannel, AuditEntry, Target
from tests.alert_receivers import free_port

pytestmark = pytest.mark.django_db
HOOK = "/hooks/T000/B000/never-shown-again"


def channel_data(**fields):
    data = {"name": "chat", "kind": "webhook", "enabled": "on", "recipients": "", "new_webhook_url": "",
            "events": list(CHANNEL_EVENTS)}  # fmt: skip
    return data | fields


def messages_of(response) -> str:
    return "\n".join(str(message) for message in response.context["messages"])


def test_it_adds_a_webhook_channel_and_never_shows_its_url_again(admin_client, webhook):
    response = admin_client.post(
        reverse("admin:sync_alertchannel_add"), channel_data(new_webhook_url=webhook.url(HOOK))
    )
    assert response.status_code == 302, response.content.decode()
    channel = AlertChannel.objects.get()
    assert channel.webhook_url == webhook.url(HOOK) and channel.events == list(CHANNEL_EVENTS)
    url = reverse("admin:sync_alertchannel_change", args=[channel.pk])
    page = admin_client.get(url).content.decode()
    assert HOOK not in page and "Stored URL: <strong>set</strong>" in page
    admin_client.post(url, channel_data(events=["run_failed"]))  # an empty URL box keeps the stored one
    channel.refresh_from_db()
    assert channel.webhook_url == webhook.url(HOOK) and channel.events == ["run_failed"]
    assert [e.changed_fields for e in AuditEntry.objects.order_by("id")] == [
        ["events", "kind", "name", "webhook_url"],
        ["events"],
    ]


def test_it_refuses_a_webhook_channel_without_url_or_an_email_channel_without_recipients(admin_client):
    response = admin_client.post(reverse("admin:sync_alertchannel_add"), channel_data())
    assert "A webhook channel needs its URL." in response.content.decode()
    response = admin_client.post(reverse("admin:sync_alertchannel_add"), channel_data(kind="email"))
    assert "An e-mail channel needs at least one recipient." in response.content.decode()
    assert not AlertChannel.objects.exists()


def test_it_limits_a_channel_to_some_targets(admin_client, smtp_server):
    partner = Target.objects.create(name="partner")
    data = channel_data(kind="email", recipients="ops@example.org", targets=[partner.pk])
    admin_client.post(reverse("admin:sync_alertchannel_add"), data)
    assert list(AlertChannel.objects.get().targets.all()) == [partner]
    assert "partner" in admin_client.get(reverse("admin:sync_alertchannel_changelist")).content.decode()


def test_the_test_alert_is_sent_at_once_and_says_so(admin_client, smtp_server, webhook):
    mail = AlertChannel.objects.create(name="mail", kind="email", recipients="ops@example.org")
    hook = AlertChannel.objects.create(name="hook", kind="webhook", webhook_url=webhook.url(HOOK))
    data = {"action": "send_test_alert", "_selected_action": [mail.pk, hook.pk]}
    response = admin_client.post(reverse("admin:sync_alertchannel_changelist"), data, follow=True)
    page = messages_of(response)
    assert "mail: test alert sent" in page and "hook: test alert sent" in page
    (message,) = smtp_server.wait_for(1)
    assert message["Subject"] == "GlanceSync test alert to channel mail"
    assert webhook.bodies[0]["glancesync"]["event"] == "test"
    assert Alert.objects.filter(event="test").count() == 2


def test_a_failing_test_alert_says_why_and_marks_the_channel_failing(admin_client):
    hook = AlertChannel.objects.create(name="hook", kind="webhook", webhook_url=f"http://127.0.0.1:{free_port()}{HOOK}")
    data = {"action": "send_test_alert", "_selected_action": [hook.pk]}
    response = admin_client.post(reverse("admin:sync_alertchannel_changelist"), data, follow=True)
    page = messages_of(response) + response.content.decode()
    assert "hook: the test alert failed: cannot connect to the webhook (refused or unreachable)" in page
    assert HOOK not in page
    assert "FAILING since" in admin_client.get(reverse("admin:sync_alertchannel_changelist")).content.decode()


def test_the_changelist_shows_the_state_of_each_channel(admin_client):
    AlertChannel.objects.create(
        name="broken", kind="email", recipients="a@example.org", failing_since=timezone.now(), last_error="HTTP 500"
    )
    AlertChannel.objects.create(name="quiet", kind="email", recipients="a@example.org", enabled=False)
    page = admin_client.get(reverse("admin:sync_alertchannel_changelist")).content.decode()
    assert "FAILING since" in page and ": HTTP 500" in page and "disabled" in page
