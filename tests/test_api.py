"""The JSON API (/api/v1/): every endpoint, every error status, tokens and roles; no traceback, no secret."""

import json

import pytest
from django.core.management import call_command
from django.utils import timezone

from sync.models import ApiToken, AuditEntry, ChecksumDecision, MasterSettings, RefreshRequest, RegionRun, SyncRun
from sync.tasks import refresh_status
from tests.conftest import DEMO, user_with_role

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(demo_cloud):
    """The demo configuration in the database (decisions live there) and the status snapshot."""
    call_command("import_glancesync_conf", str(DEMO / "glancesync.conf"), stdout=None)
    MasterSettings.objects.filter(pk=1).update(cloud=f"files:{demo_cloud}")
    refresh_status()


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kwargs: calls.append(args) or "task")
    return calls


def api_client(client, django_user_model, role: str, name: str):
    _, token = ApiToken.issue(user_with_role(django_user_model, name, role), f"{name}'s token")
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


@pytest.fixture
def viewer_api(client, django_user_model):
    return api_client(client, django_user_model, "viewer", "vera")


@pytest.fixture
def operator_api(client, django_user_model):
    return api_client(client, django_user_model, "operator", "otto")


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "detail"}, body
    return body["error"]


def post(client, url, body=None):
    return client.post(url, json.dumps(body) if body is not None else "", content_type="application/json")


# -- auth -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic dXNlcjpwYXNz", "Bearer "])
def test_it_answers_401_without_a_valid_token(client, console, header):
    headers = {"HTTP_AUTHORIZATION": header} if header else {}
    for url in ("/api/v1/", "/api/v1/regions", "/api/v1/regions/Bilbao"):
        response = client.get(url, **headers)
        assert response.status_code == 401
        assert error_of(response)["code"] == "unauthorized"


def test_a_revoked_token_or_inactive_user_is_refused(client, console, django_user_model):
    token_row, token = ApiToken.issue(user_with_role(django_user_model, "vera", "viewer"), "t")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    assert client.get("/api/v1/regions", **auth).status_code == 200
    ApiToken.objects.filter(pk=token_row.pk).update(revoked=True)
    assert client.get("/api/v1/regions", **auth).status_code == 401
    ApiToken.objects.filter(pk=token_row.pk).update(revoked=False)
    django_user_model.objects.filter(username="vera").update(is_active=False)
    assert client.get("/api/v1/regions", **auth).status_code == 401


def test_tokens_are_stored_hashed_and_recorded_when_used(viewer_api, console):
    row = ApiToken.objects.get()
    token = viewer_api.defaults["HTTP_AUTHORIZATION"].removeprefix("Bearer ")
    assert token not in (row.digest, row.prefix) and row.digest == ApiToken.hash(token)
    assert row.last_used_at is None
    viewer_api.get("/api/v1/")
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_a_user_without_a_role_gets_403(client, console, django_user_model):
    _, token = ApiToken.issue(django_user_model.objects.create_user("nobody"), "t")
    response = client.get("/api/v1/regions", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403 and error_of(response)["code"] == "forbidden"


def test_viewers_cannot_change_anything(viewer_api, console, enqueued):
    assert post(viewer_api, "/api/v1/regions/Bilbao", {"dry_run": True}).status_code == 403
    assert post(viewer_api, "/api/v1/runs", {"regions": ["Bilbao"]}).status_code == 403
    assert (
        post(viewer_api, "/api/v1/targets/master/checksums", {"checksum": "a" * 32, "action": "rename"}).status_code
        == 403
    )
    assert viewer_api.delete("/api/v1/targets/master/checksums/any").status_code == 403
    assert not SyncRun.objects.exists() and not enqueued


# -- reading --------------------------------------------------------------------------------------------------


def test_the_root_gives_version_and_health(viewer_api, console):
    body = viewer_api.get("/api/v1/").json()
    assert body["name"] == "GlanceSync" and body["api"] == "v1"
    assert body["health"]["statuses_computed_at"] and body["health"]["active_runs"] == 0


def test_it_lists_every_region_of_every_target_with_counts(viewer_api, console):
    regions = {r["region"]: r for r in viewer_api.get("/api/v1/regions").json()}
    assert {"Bilbao", "partner:Lisbon", "partner:Porto", "Madrid"} <= set(regions)
    bilbao = regions["Bilbao"]
    assert bilbao["target"] == "master" and sum(bilbao["counts"].values()) == 22
    assert bilbao["counts"]["pending_upload"] == 9
    assert regions["partner:Lisbon"]["url"] == "/api/v1/regions/partner:Lisbon"


def test_a_region_lists_the_sync_status_of_each_image_with_filters(viewer_api, console):
    body = viewer_api.get("/api/v1/regions/partner%3ALisbon").json()
    assert body["target"] == "partner"
    images = {i["name"]: i for i in body["images"]}
    assert images["debian-12-ami"]["status"] == "error_ami"
    assert (
        images["rocky-9-x86_64"]["message"]
        == "same content; name, visibility, hidden flag, tags or properties will be updated"
    )
    only = viewer_api.get("/api/v1/regions/partner:Lisbon", {"status": "pending_upload"}).json()["images"]
    assert only and {i["status"] for i in only} == {"pending_upload"}
    one = viewer_api.get("/api/v1/regions/partner:Lisbon", {"image": "rocky-9-x86_64"}).json()["images"]
    assert [i["name"] for i in one] == ["rocky-9-x86_64"]


def test_a_region_lists_the_images_a_sync_leaves_alone(viewer_api, console):
    body = viewer_api.get("/api/v1/regions/Sevilla").json()
    others = {o["name"]: o for o in body["other_images"]}
    assert others["ubuntu-24.04-server-amd64"]["why"] == "owned by another project"
    assert others["debian-12-genericcloud-amd64"] == {
        "name": "debian-12-genericcloud-amd64", "status": "queued", "public": True, "size": 0,
        "why": "not active (queued)", "visibility": "public", "hidden": False, "tags": [],
    }  # fmt: skip
    assert body["other_images_total"] == len(others) == 3


def test_unknown_things_are_404_and_bad_input_400(viewer_api, console):
    assert error_of(viewer_api.get("/api/v1/regions/Nowhere"))["code"] == "not_found"
    assert viewer_api.get("/api/v1/regions/nobody:Lisbon").status_code == 404
    assert viewer_api.get("/api/v1/regions/Bilbao/tasks/999").status_code == 404
    assert viewer_api.get("/api/v1/runs/999").status_code == 404
    assert viewer_api.get("/api/v1/targets/nobody/checksums").status_code == 404
    assert viewer_api.get("/api/v1/no-such-endpoint").status_code == 404
    response = viewer_api.get("/api/v1/regions/Bilbao", {"status": "sleeping"})
    assert response.status_code == 400 and error_of(response)["code"] == "bad_request"


def test_a_wrong_method_is_405_in_the_same_shape(viewer_api, console):
    response = viewer_api.put("/api/v1/regions/Bilbao")
    assert response.status_code == 405
    assert error_of(response)["detail"] == {"allowed": ["GET", "POST"]}


# -- syncs and tasks ------------------------------------------------------------------------------------------


def test_post_starts_a_sync_and_answers_202_with_the_task(
    operator_api, console, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(operator_api, "/api/v1/regions/partner%3ALisbon", {"dry_run": True})
    assert response.status_code == 202
    task = response.json()
    assert response["Location"] == f"/api/v1/regions/partner:Lisbon/tasks/{task['task_id']}"
    assert (task["region"], task["state"], task["dry_run"]) == ("partner:Lisbon", "queued", True)
    run = SyncRun.objects.get()
    assert (run.trigger, run.started_by) == ("api", "otto")
    assert enqueued == [(task["task_id"],)]
    assert AuditEntry.objects.filter(username="otto", model="syncrun").exists()
    assert operator_api.get(response["Location"]).json()["state"] == "queued"


def test_a_second_post_for_a_busy_region_is_409_with_the_running_task(operator_api, console, enqueued):
    first = post(operator_api, "/api/v1/regions/Bilbao").json()
    response = post(operator_api, "/api/v1/regions/Bilbao", {"dry_run": False})
    assert response.status_code == 409
    error = error_of(response)
    assert error["code"] == "busy" and error["detail"]["task_id"] == first["task_id"]


def test_a_task_reports_progress_and_counters(viewer_api, console):
    run = SyncRun.objects.create(trigger="api", regions=["Bilbao"], state="running")
    task = RegionRun.objects.create(
        run=run, region="Bilbao", state="running", uploads=3, bytes_done=10, bytes_total=40, images_total=12
    )
    body = viewer_api.get(f"/api/v1/regions/Bilbao/tasks/{task.pk}").json()
    assert (body["bytes_done"], body["bytes_total"], body["counters"]["uploads"]) == (10, 40, 3)
    assert viewer_api.get(f"/api/v1/regions/Malaga/tasks/{task.pk}").status_code == 404  # another region's


def test_delete_forgets_a_finished_task_only(operator_api, console):
    run = SyncRun.objects.create(trigger="api", regions=["Bilbao"], state="running")
    task = RegionRun.objects.create(run=run, region="Bilbao", state="running")
    assert error_of(operator_api.delete(f"/api/v1/regions/Bilbao/tasks/{task.pk}"))["code"] == "busy"
    RegionRun.objects.filter(pk=task.pk).update(state="done")
    assert operator_api.delete(f"/api/v1/regions/Bilbao/tasks/{task.pk}").status_code == 204
    assert not RegionRun.objects.exists() and not SyncRun.objects.exists()


def test_post_runs_starts_several_regions(operator_api, console, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(operator_api, "/api/v1/runs", {"regions": ["Bilbao", "partner:Porto"], "dry_run": True})
    assert response.status_code == 202
    body = response.json()
    assert [t["region"] for t in body["tasks"]] == ["Bilbao", "partner:Porto"]
    assert response["Location"] == f"/api/v1/runs/{body['run_id']}"
    assert operator_api.get(response["Location"]).json()["run_id"] == body["run_id"]
    assert post(operator_api, "/api/v1/runs", {"regions": []}).status_code == 400
    assert post(operator_api, "/api/v1/runs", {"regions": ["Atlantis"]}).status_code == 404
    assert post(operator_api, "/api/v1/runs", {"dry_run": True}).status_code == 400
    assert post(operator_api, "/api/v1/runs", "not an object").status_code == 400


# -- checksum decisions ---------------------------------------------------------------------------------------


def test_checksum_decisions_are_listed_added_and_removed(operator_api, console):
    listed = operator_api.get("/api/v1/targets/master/checksums").json()
    assert {(d["checksum"], d["action"]) for d in listed} == {
        (d.checksum, d.action) for d in ChecksumDecision.objects.filter(target__name="master")
    }
    checksum = "0123456789abcdef0123456789abcdef"
    response = post(operator_api, "/api/v1/targets/master/checksums", {"checksum": checksum, "action": "replace"})
    assert response.status_code == 201 and response.json()["created_by"] == "otto"
    again = post(operator_api, "/api/v1/targets/master/checksums", {"checksum": checksum, "action": "rename"})
    assert again.status_code == 409
    assert operator_api.delete(f"/api/v1/targets/master/checksums/{checksum}").status_code == 204
    assert operator_api.delete(f"/api/v1/targets/master/checksums/{checksum}").status_code == 404
    post(operator_api, "/api/v1/targets/master/checksums", {"checksum": checksum, "action": "rename"})
    assert operator_api.delete(f"/api/v1/targets/master/checksums?checksum={checksum}").status_code == 204
    assert operator_api.delete("/api/v1/targets/master/checksums").status_code == 400  # which checksum?
    assert [e.action for e in AuditEntry.objects.filter(username="otto")] == ["delete", "create", "delete", "create"]


def test_a_decision_or_its_removal_queues_a_refresh_of_the_targets_regions(
    operator_api, console, enqueued, django_capture_on_commit_callbacks
):
    checksum = "0123456789abcdef0123456789abcdef"
    with django_capture_on_commit_callbacks(execute=True):
        post(operator_api, "/api/v1/targets/partner/checksums", {"checksum": checksum, "action": "replace"})
    assert [(r.regions, r.requested_by) for r in RefreshRequest.objects.all()] == [(["partner:"], "otto")]
    RefreshRequest.objects.update(started_at=timezone.now())  # under way: the removal needs its own
    with django_capture_on_commit_callbacks(execute=True):
        assert operator_api.delete(f"/api/v1/targets/partner/checksums/{checksum}").status_code == 204
    assert RefreshRequest.objects.count() == 2 and enqueued == [(["partner:"],), (["partner:"],)]


@pytest.mark.parametrize(
    "body",
    [
        {"checksum": "not hex!", "action": "rename"},
        {"checksum": "any", "action": "dontupdate"},
        {"checksum": "0123456789abcdef0123456789abcdef", "action": "explode"},
        {"action": "rename"},
    ],
)
def test_bad_decisions_are_400_and_save_nothing(operator_api, console, body):
    before = ChecksumDecision.objects.count()
    response = post(operator_api, "/api/v1/targets/master/checksums", body)
    assert response.status_code == 400, response.content
    assert error_of(response)["code"] == "bad_request"
    assert ChecksumDecision.objects.count() == before


# -- no leaks -------------------------------------------------------------------------------------------------


def test_an_unexpected_error_is_500_without_traceback_or_secret(operator_api, console, monkeypatch):
    secret = "hunter2-secret-password"

    def explode(*args, **kwargs):
        raise RuntimeError(f"cannot connect with password {secret}")

    monkeypatch.setattr("sync.api.runs.start_run", explode)
    operator_api.raise_request_exception = False
    response = post(operator_api, "/api/v1/regions/Bilbao")
    assert response.status_code == 500
    assert error_of(response)["code"] == "internal_error"
    assert secret not in response.content.decode() and "Traceback" not in response.content.decode()


def test_the_openapi_document_describes_every_endpoint(viewer_api):
    document = viewer_api.get("/api/v1/openapi.json").json()
    assert document["info"]["title"] == "GlanceSync API"
    assert set(document["paths"]) == {
        "/api/v1/", "/api/v1/regions", "/api/v1/regions/{region}", "/api/v1/regions/{region}/tasks/{task_id}",
        "/api/v1/runs", "/api/v1/runs/{run_id}", "/api/v1/targets/{target}/checksums",
        "/api/v1/targets/{target}/checksums/{checksum}",
    }  # fmt: skip
    assert "BearerToken" in document["components"]["securitySchemes"]


def test_a_region_answer_shows_visibility_hidden_tags_and_a_planned_rotation(viewer_api, console):
    body = viewer_api.get("/api/v1/regions/Zaragoza").json()
    images = {i["name"]: i for i in body["images"]}
    old = images["debian-12-genericcloud-amd64 (20261101)"]
    assert old["status"] == "pending_metadata"
    assert old["master"] == {"visibility": "public", "hidden": True, "tags": []}
    assert old["region_copy"] == {
        "id": "bd2b6ba7-77b2-5c15-9f1c-bd08b0cae5cc", "name": "debian-12-genericcloud-amd64",
        "visibility": "public", "hidden": False, "tags": [],
    }  # fmt: skip
    assert old["planned"].startswith("rename the copy debian-12-genericcloud-amd64 → ")
    assert "rotation: the master renamed this image" in old["message"]
    new = images["debian-12-genericcloud-amd64"]
    assert new["region_copy"] is None and new["planned"] == "" and "rotation:" in new["message"]
    bilbao = {i["name"]: i for i in viewer_api.get("/api/v1/regions/Bilbao").json()["images"]}
    assert bilbao["octavia-amphora-haproxy-x64"]["master"]["tags"] == ["amphora"]
    assert bilbao["octavia-amphora-haproxy-x64"]["planned"] == "add the tag amphora"
