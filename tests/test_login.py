"""Logging in: django-axes locks a user name out from an address after repeated failures (issue #16)."""

import pytest
from axes.models import AccessAttempt
from django.urls import reverse

pytestmark = pytest.mark.django_db
PASSWORD = "the-right-password-1"


@pytest.fixture
def otto(django_user_model):
    return django_user_model.objects.create_user("otto", password=PASSWORD)


def log_in(client, password, username="otto", address="10.0.0.1"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address)


def test_it_logs_in_with_the_right_password(client, otto):
    response = log_in(client, PASSWORD)
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(otto.pk)


def test_it_locks_a_user_name_out_from_an_address_after_repeated_failures(client, otto, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = log_in(client, "wrong")
        assert (
            response.status_code == 200 and "Please enter a correct username and password" in response.content.decode()
        )
    response = log_in(client, "wrong")  # the last allowed failure locks it
    assert response.status_code == 429
    response = log_in(client, PASSWORD)  # even the right password, now
    page = response.content.decode()
    assert response.status_code == 429 and "Too many failed logins" in page
    assert f"{settings.AXES_FAILURE_LIMIT} logins in a row failed" in page and "0:15:00" in page
    assert "_auth_user_id" not in client.session
    assert log_in(client, PASSWORD, address="10.0.0.2").status_code == 302  # another address is not locked


def test_a_success_resets_the_count(client, otto, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "wrong")
    assert log_in(client, PASSWORD).status_code == 302
    client.logout()
    assert log_in(client, "wrong").status_code == 200  # counting starts again


def test_the_admin_login_is_throttled_too(client, otto, settings):
    otto.is_staff = True
    otto.save()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post(reverse("admin:login"), {"username": "otto", "password": "wrong"}, REMOTE_ADDR="10.0.0.3")
    response = client.post(reverse("admin:login"), {"username": "otto", "password": PASSWORD}, REMOTE_ADDR="10.0.0.3")
    assert response.status_code == 429


def test_no_password_is_stored_with_the_attempts(client, otto):
    log_in(client, "a-guessed-Secret-9")
    (attempt,) = AccessAttempt.objects.all()
    assert "a-guessed-Secret-9" not in attempt.post_data and attempt.failures_since_start == 1


def test_logins_failures_and_lockouts_are_in_the_audit_log(client, otto, settings):
    from sync.models import AuditEntry

    log_in(client, PASSWORD)
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "guess-Secret-7", address="10.0.0.9")
    entries = list(AuditEntry.objects.filter(model="login").order_by("id").values_list("action", "object_repr"))
    assert entries[0] == ("login", "otto from 10.0.0.1")
    assert sorted(entries[1:]) == [("failed", "otto from 10.0.0.9")] * settings.AXES_FAILURE_LIMIT + [
        ("locked", "otto from 10.0.0.9")
    ]  # django-axes tells of the lockout before Django tells of the last failure
    assert AuditEntry.objects.filter(model="login", action="login").get().user == otto
    assert not AuditEntry.objects.filter(object_repr__contains="guess-Secret-7").exists()
