"""The configuration admin: pages, the write-only password, validation messages and the audit log."""

from __future__ import annotations

import re

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.urls import reverse

from sync import crypto
from sync.models import AuditEntry, ChecksumDecision, Defaults, MasterSettings, RefreshRequest, Region, Target

pytestmark = pytest.mark.django_db
SECRET = "Very-Secret-Pw-42"
MD5 = "e4acfbc74750180ec2ef5d15d47fbf1b"


@pytest.fixture(autouse=True)
def fernet_key(monkeypatch):
    monkeypatch.setenv(crypto.ENV_KEYS, Fernet.generate_key().decode())


@pytest.fixture(autouse=True)
def openstack_cloud():
    MasterSettings.objects.create(master_region="Madrid", cloud="openstack")


def target_data(**overrides):
    data = {
        "name": "partner",
        "auth_url": "http://keystone:5000/v3",
        "identity_api_version": "3",
        "user": "sync",
        "new_password": "",
        "project_name": "proj",
        "metadata_set": "type, nid",
        "regions-TOTAL_FORMS": "0",
        "regions-INITIAL_FORMS": "0",
        "decisions-TOTAL_FORMS": "0",
        "decisions-INITIAL_FORMS": "0",
    }
    data.update(overrides)
    return data


def test_changelists_render(admin_client):
    Target.objects.create(name="master", password=SECRET)
    for model in ("target", "region", "checksumdecision", "defaults", "mastersettings", "auditentry"):
        response = admin_client.get(reverse(f"admin:sync_{model}_changelist"))
        assert response.status_code == 200, model
        assert SECRET not in response.content.decode()


def test_add_target_with_password_region_and_decision(admin_client, admin_user):
    data = target_data(
        new_password=SECRET,
        **{
            "regions-TOTAL_FORMS": "1",
            "regions-0-name": "Lisbon",
            "regions-0-enabled": "on",
            "regions-0-position": "3",
            "decisions-TOTAL_FORMS": "1",
            "decisions-0-checksum": MD5,
            "decisions-0-action": "rename",
            "decisions-0-reason": "old build",
        },
    )
    response = admin_client.post(reverse("admin:sync_target_add"), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    target = Target.objects.get(name="partner")
    assert target.password == SECRET and target.metadata_set == "type, nid"
    assert Region.objects.get(target=target).name == "Lisbon"
    decision = ChecksumDecision.objects.get(target=target)
    assert decision.created_by == admin_user
    entries = AuditEntry.objects.all()
    assert {(e.model, e.action) for e in entries} == {
        ("target", "create"),
        ("region", "create"),
        ("checksumdecision", "create"),
    }
    target_entry = entries.get(model="target")
    assert "password" in target_entry.changed_fields and target_entry.username == admin_user.username
    assert SECRET not in str(list(AuditEntry.objects.values()))


def test_change_page_never_shows_password_and_empty_keeps_it(admin_client):
    target = Target.objects.create(name="partner", password=SECRET, user="sync")
    url = reverse("admin:sync_target_change", args=[target.pk])
    page = admin_client.get(url).content.decode()
    assert SECRET not in page
    assert target.__class__.objects.get(pk=target.pk).password == SECRET
    assert "<strong>set</strong>" in page
    assert "effective" in page and "built-in" in page
    response = admin_client.post(url, target_data(user="other"))
    assert response.status_code == 302
    target.refresh_from_db()
    assert target.password == SECRET and target.user == "other"
    entry = AuditEntry.objects.get(model="target", action="change")
    assert "user" in entry.changed_fields and "password" not in entry.changed_fields


def test_change_and_clear_password(admin_client):
    target = Target.objects.create(name="partner", password=SECRET)
    url = reverse("admin:sync_target_change", args=[target.pk])
    admin_client.post(url, target_data(new_password="new-one"))
    target.refresh_from_db()
    assert target.password == "new-one"
    admin_client.post(url, target_data(clear_password="on"))
    target.refresh_from_db()
    assert target.password == ""
    assert "<strong>not set</strong>" in admin_client.get(url).content.decode()
    changes = [e.changed_fields for e in AuditEntry.objects.filter(model="target", action="change")]
    assert len(changes) == 2 and all("password" in fields for fields in changes)


def test_effective_value_from_defaults_shown(admin_client):
    Defaults(obsolete_syncprops="deprecated").save()
    target = Target.objects.create(name="partner")
    page = admin_client.get(reverse("admin:sync_target_change", args=[target.pk])).content.decode()
    assert "deprecated <small>(defaults)</small>" in page


def test_rotations_are_followed_unless_the_target_or_defaults_turn_them_off(admin_client):
    target = Target.objects.create(name="partner")
    url = reverse("admin:sync_target_change", args=[target.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="follow_rotations"' in page and "True <small>(built-in)</small>" in page
    assert admin_client.post(url, target_data(follow_rotations="false")).status_code == 302
    target.refresh_from_db()
    assert target.follow_rotations is False and target.to_policy().follow_rotations is False


def test_bad_condition_message(admin_client):
    response = admin_client.post(reverse("admin:sync_target_add"), target_data(metadata_condition="image.__class__"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "metadata_condition" in errors
    assert not Target.objects.exists()


def test_bad_checksum_message_and_nothing_saved(admin_client):
    data = target_data(
        **{"decisions-TOTAL_FORMS": "1", "decisions-0-checksum": "not-a-sum", "decisions-0-action": "rename"}
    )
    response = admin_client.post(reverse("admin:sync_target_add"), data)
    assert response.status_code == 200
    assert "is not a checksum" in response.content.decode()
    assert not Target.objects.exists()


def test_any_in_dontupdate_and_duplicate_checksum_refused(admin_client):
    data = target_data(
        **{
            "decisions-TOTAL_FORMS": "2",
            "decisions-0-checksum": MD5,
            "decisions-0-action": "rename",
            "decisions-1-checksum": MD5,
            "decisions-1-action": "replace",
        }
    )
    response = admin_client.post(reverse("admin:sync_target_add"), data)
    assert response.status_code == 200 and not Target.objects.exists()
    data = target_data(
        **{"decisions-TOTAL_FORMS": "1", "decisions-0-checksum": "any", "decisions-0-action": "dontupdate"}
    )
    response = admin_client.post(reverse("admin:sync_target_add"), data)
    assert "no meaning in dontupdate" in response.content.decode()


def test_delete_is_audited(admin_client):
    target = Target.objects.create(name="gone", password=SECRET)
    response = admin_client.post(reverse("admin:sync_target_delete", args=[target.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert AuditEntry.objects.filter(model="target", action="delete", object_repr="gone").exists()


def test_singletons_cannot_be_added_twice(admin_client):
    Defaults.load().save()
    assert admin_client.get(reverse("admin:sync_defaults_add")).status_code == 403
    assert admin_client.get(reverse("admin:sync_mastersettings_add")).status_code == 403


def test_defaults_and_master_settings_forms(admin_client):
    MasterSettings.objects.all().delete()
    response = admin_client.post(
        reverse("admin:sync_mastersettings_add"),
        {"master_region": "Madrid", "max_children": "0", "cloud": "s3:x", "images_dir": ""},
    )
    assert response.status_code == 200 and not MasterSettings.objects.exists()
    errors = response.context["adminform"].form.errors
    assert "max_children" in errors and "cloud" in errors
    response = admin_client.post(
        reverse("admin:sync_defaults_add"), {"metadata_condition": "image.size >", "metadata_set": "a, b, a"}
    )
    assert response.status_code == 200 and "metadata_condition" in response.context["adminform"].form.errors
    response = admin_client.post(reverse("admin:sync_defaults_add"), {"metadata_set": " a, b, a "})
    assert response.status_code == 302
    assert Defaults.load().metadata_set == "a, b"
    assert AuditEntry.objects.filter(model="defaults", action="create").exists()


def action_messages(response) -> str:
    assert SECRET not in response.content.decode()
    return "\n".join(str(message) for message in response.context["messages"])


def test_discover_regions_and_test_connection_on_files_cloud(admin_client, tmp_path):
    for name in ("Madrid", "Bilbao", "partner:Lisbon"):
        (tmp_path / f"backup_{name}.csv").write_text("")
    MasterSettings.objects.filter(pk=1).update(cloud=f"files:{tmp_path}")
    master = Target.objects.create(name="master", password=SECRET)
    Region.objects.create(target=master, name="Madrid", position=4)
    partner = Target.objects.create(name="partner")
    url = reverse("admin:sync_target_changelist")
    data = {"action": "discover_regions", "_selected_action": [master.pk, partner.pk]}
    page = action_messages(admin_client.post(url, data, follow=True))
    assert "master: added Bilbao" in page and "partner: added Lisbon" in page
    assert [r.fullname for r in Region.objects.all()] == ["Madrid", "Bilbao", "partner:Lisbon"]
    assert AuditEntry.objects.filter(model="region", action="create").count() == 2
    page = action_messages(admin_client.post(url, data, follow=True))
    assert "master: no new region" in page
    data["action"] = "test_connection"
    page = action_messages(admin_client.post(url, data, follow=True))
    assert "master: OK, image regions: Bilbao, Madrid" in page and SECRET not in page


def test_connection_failure_message_has_no_secret(admin_client):
    target = Target.objects.create(
        name="master", password=SECRET, auth_url="http://127.0.0.1:9/v3", user="u", project_name="p"
    )
    url = reverse("admin:sync_target_changelist")
    data = {"action": "test_connection", "_selected_action": [target.pk]}
    page = action_messages(admin_client.post(url, data, follow=True))
    assert "master: failed:" in page and SECRET not in page


def test_the_run_history_shows_each_region_log_and_cancels_active_runs(admin_client):
    from sync.models import RegionRun, SyncRun

    active = SyncRun.objects.create(trigger="cli", regions=["Bilbao", "Malaga"], state="running")
    RegionRun.objects.create(run=active, region="Bilbao", state="running", log="05:00:00 INFO Bilbao: Uploading x")
    RegionRun.objects.create(run=active, region="Malaga")
    done = SyncRun.objects.create(trigger="schedule", started_by="nightly", regions=["Sevilla"], state="done")
    page = admin_client.get(reverse("admin:sync_syncrun_change", args=[active.pk])).content.decode()
    assert "05:00:00 INFO Bilbao: Uploading x" in page
    assert "Bilbao, Malaga" in admin_client.get(reverse("admin:sync_syncrun_changelist")).content.decode()
    data = {"action": "cancel_runs", "_selected_action": [active.pk, done.pk]}
    response = admin_client.post(reverse("admin:sync_syncrun_changelist"), data, follow=True)
    assert "Cancel requested for 1 run(s)" in response.content.decode()
    active.refresh_from_db()
    assert active.cancel_requested and active.region_runs.get(region="Malaga").state == "cancelled"
    done.refresh_from_db()
    assert not done.cancel_requested
    assert admin_client.get(reverse("admin:sync_syncrun_add")).status_code == 403


def test_an_api_token_is_shown_once_stored_hashed_and_revocable(admin_client, admin_user):
    from sync.models import ApiToken

    response = admin_client.post(reverse("admin:sync_apitoken_add"), {"user": admin_user.pk, "name": "CI"}, follow=True)
    page = response.content.decode()
    token = re.search(r"(gs_[A-Za-z0-9_-]{40,})", page).group(1)
    row = ApiToken.objects.get()
    assert row.digest == ApiToken.hash(token) and token not in row.digest
    assert ApiToken.user_for(token) == admin_user
    change_page = admin_client.get(reverse("admin:sync_apitoken_change", args=[row.pk])).content.decode()
    assert token not in change_page and row.digest not in change_page
    data = {"action": "revoke", "_selected_action": [row.pk]}
    admin_client.post(reverse("admin:sync_apitoken_changelist"), data)
    assert ApiToken.user_for(token) is None


# -- a save queues a status refresh of the regions it affects --------------------------------------------------


@pytest.fixture
def enqueued(monkeypatch):
    """Record the refresh tasks enqueued (once the admin's transaction has committed)."""
    calls = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kwargs: calls.append(args) or "task")
    return calls


def test_the_master_region_is_chosen_among_the_regions_of_the_master_target(admin_client):
    master, partner = Target.objects.create(name="master"), Target.objects.create(name="partner")
    Region.objects.create(target=master, name="RegionTwo", position=1)
    Region.objects.create(target=master, name="RegionOne", position=0)
    Region.objects.create(target=partner, name="Lisbon", position=2)
    url = reverse("admin:sync_mastersettings_change", args=[1])
    response = admin_client.get(url)
    assert '<select name="master_region"' in response.content.decode()
    assert list(response.context["adminform"].form.fields["master_region"].choices) == [
        ("", "---------"),
        ("RegionOne", "RegionOne"),
        ("RegionTwo", "RegionTwo"),
        ("Madrid", "Madrid (not a known region of target master)"),  # the current value, kept
    ]
    data = {"master_region": "Lisbon", "max_children": "1", "cloud": "openstack", "images_dir": ""}
    response = admin_client.post(url, data)  # a region of another target
    assert response.status_code == 200 and "master_region" in response.context["adminform"].form.errors
    assert MasterSettings.load().master_region == "Madrid"
    assert admin_client.post(url, {**data, "master_region": "RegionTwo"}).status_code == 302
    assert MasterSettings.load().master_region == "RegionTwo"
    choices = admin_client.get(url).context["adminform"].form.fields["master_region"].choices
    assert [value for value, _ in choices] == ["", "RegionOne", "RegionTwo"]


def saved(admin_client, capture, url, data) -> str:
    """POST the admin form, run what waits for the commit; the messages of the page it leads to."""
    with capture(execute=True):
        response = admin_client.post(url, data, follow=True)
    assert response.status_code == 200 and response.redirect_chain, response.content.decode()[:2000]
    return action_messages(response)


def test_saving_the_master_settings_or_defaults_refreshes_every_region(
    admin_client, enqueued, django_capture_on_commit_callbacks
):
    url = reverse("admin:sync_mastersettings_change", args=[1])
    data = {"master_region": "Madrid", "max_children": "2", "cloud": "openstack", "images_dir": ""}
    page = saved(admin_client, django_capture_on_commit_callbacks, url, data)
    assert "A status refresh of every region was queued." in page
    refresh = RefreshRequest.objects.get()
    assert (refresh.regions, refresh.requested_by, enqueued) == ([], "admin", [(None,)])
    page = saved(admin_client, django_capture_on_commit_callbacks, reverse("admin:sync_defaults_add"), {})
    assert "A status refresh of every region was already waiting for a task worker: it will read this change." in page
    assert RefreshRequest.objects.count() == 1 and len(enqueued) == 1


def test_saving_a_target_refreshes_its_regions_once_with_its_inlines(
    admin_client, enqueued, django_capture_on_commit_callbacks
):
    data = target_data(
        new_password=SECRET,
        **{
            "regions-TOTAL_FORMS": "1", "regions-0-name": "Lisbon", "regions-0-enabled": "on",
            "regions-0-position": "3", "decisions-TOTAL_FORMS": "1", "decisions-0-checksum": MD5,
            "decisions-0-action": "rename",
        },
    )  # fmt: skip
    page = saved(admin_client, django_capture_on_commit_callbacks, reverse("admin:sync_target_add"), data)
    assert "A status refresh of the regions of partner was queued." in page
    assert [r.regions for r in RefreshRequest.objects.all()] == [["partner:"]] and enqueued == [(["partner:"],)]


def test_saving_the_master_target_refreshes_every_region_and_deleting_a_target_nothing(
    admin_client, enqueued, django_capture_on_commit_callbacks
):
    master = Target.objects.create(name="master")
    url = reverse("admin:sync_target_change", args=[master.pk])
    saved(admin_client, django_capture_on_commit_callbacks, url, target_data(name="master"))
    assert RefreshRequest.objects.get().regions == []  # every status compares with the master region
    RefreshRequest.objects.all().delete()
    partner = Target.objects.create(name="partner")
    url = reverse("admin:sync_target_delete", args=[partner.pk])
    page = saved(admin_client, django_capture_on_commit_callbacks, url, {"post": "yes"})
    assert "status refresh" not in page and not RefreshRequest.objects.exists()


def test_a_refused_form_queues_nothing(admin_client, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(reverse("admin:sync_target_add"), target_data(metadata_condition="image.("))
    assert response.status_code == 200 and not RefreshRequest.objects.exists() and enqueued == []


def test_saving_regions_refreshes_them_in_one_request(admin_client, enqueued, django_capture_on_commit_callbacks):
    partner = Target.objects.create(name="partner")
    data = {"target": partner.pk, "name": "Lisbon", "enabled": "on", "position": "1"}
    page = saved(admin_client, django_capture_on_commit_callbacks, reverse("admin:sync_region_add"), data)
    assert "A status refresh of partner:Lisbon was queued." in page
    RefreshRequest.objects.all().delete()
    master = Target.objects.create(name="master")
    regions = [Region.objects.get(name="Lisbon"), Region.objects.create(target=master, name="Bilbao", position=2)]
    data = {"form-TOTAL_FORMS": "2", "form-INITIAL_FORMS": "2", "_save": "Save"}
    for i, region in enumerate(regions):  # the list's editable columns, both changed in one POST
        data |= {f"form-{i}-id": region.pk, f"form-{i}-position": str(10 + i)}
    page = saved(admin_client, django_capture_on_commit_callbacks, reverse("admin:sync_region_changelist"), data)
    assert [r.regions for r in RefreshRequest.objects.all()] == [["Bilbao", "partner:Lisbon"]]
    assert "A status refresh of Bilbao, partner:Lisbon was queued." in page
    RefreshRequest.objects.all().delete()
    url = reverse("admin:sync_region_delete", args=[regions[1].pk])
    saved(admin_client, django_capture_on_commit_callbacks, url, {"post": "yes"})
    assert not RefreshRequest.objects.exists()  # the row only ordered the region: its statuses stay


def test_a_checksum_decision_refreshes_its_targets_regions(admin_client, enqueued, django_capture_on_commit_callbacks):
    MasterSettings.objects.filter(pk=1).update(cloud="files:/nowhere")  # any word is a checksum there
    partner, other = Target.objects.create(name="partner"), Target.objects.create(name="other")
    data = {"target": partner.pk, "checksum": MD5, "action": "rename", "reason": ""}
    page = saved(admin_client, django_capture_on_commit_callbacks, reverse("admin:sync_checksumdecision_add"), data)
    assert "A status refresh of the regions of partner was queued." in page
    decision = ChecksumDecision.objects.get()
    RefreshRequest.objects.all().delete()
    url = reverse("admin:sync_checksumdecision_change", args=[decision.pk])
    saved(admin_client, django_capture_on_commit_callbacks, url, data | {"action": "replace"})
    assert [r.regions for r in RefreshRequest.objects.all()] == [["partner:"]]
    RefreshRequest.objects.all().delete()
    ChecksumDecision.objects.create(target=other, checksum="ch1", action="dontupdate")
    chosen = list(ChecksumDecision.objects.values_list("pk", flat=True))
    data = {"action": "delete_selected", "_selected_action": chosen, "post": "yes"}  # the confirmed bulk delete
    saved(admin_client, django_capture_on_commit_callbacks, reverse("admin:sync_checksumdecision_changelist"), data)
    assert not ChecksumDecision.objects.exists()
    assert [r.regions for r in RefreshRequest.objects.all()] == [["other:", "partner:"]]
    assert len(enqueued) == 3


def test_the_transfer_is_chosen_per_target_and_glance_download_only_on_the_master(admin_client):
    master = Target.objects.create(name="master")
    url = reverse("admin:sync_target_change", args=[master.pk])
    page = admin_client.get(url).content.decode()
    assert 'name="transfer"' in page and "auto <small>(built-in)</small>" in page
    assert admin_client.post(url, target_data(name="master", transfer="glance-download")).status_code == 302
    master.refresh_from_db()
    assert master.to_policy().transfer == "glance-download"
    partner = Target.objects.create(name="partner")
    response = admin_client.post(
        reverse("admin:sync_target_change", args=[partner.pk]), target_data(transfer="glance-download")
    )
    assert response.status_code == 200
    assert "not for target partner: only the master target&#x27;s regions" in response.content.decode()
    assert (
        admin_client.post(
            reverse("admin:sync_target_change", args=[partner.pk]), target_data(transfer="stream")
        ).status_code
        == 302
    )
    partner.refresh_from_db()
    assert partner.to_policy().transfer == "stream" and Target(name="x").to_policy().transfer == "auto"
    Defaults(transfer="stream").save()
    assert Target(name="x").to_policy().transfer == "stream", "inherited from Defaults"
    defaults = Defaults(transfer="glance-download")
    with pytest.raises(ValidationError, match="not for the defaults"):
        defaults.full_clean()
