"""Backups: made by a queued task in the original's CSV format, listed, downloaded one by one or zipped, deleted."""

import io
import zipfile

import pytest
from django.urls import reverse

from sync.engine.backup import read_backup
from sync.models import AuditEntry, Backup
from sync.tasks import make_backup, refresh_status

pytestmark = pytest.mark.django_db


@pytest.fixture
def console(demo_cloud, settings, tmp_path):
    settings.DATA_DIR = tmp_path / "data"
    refresh_status()
    return demo_cloud


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kwargs: calls.append((func, args)))
    return calls


def make(client, django_capture_on_commit_callbacks, regions):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("sync:make_backup"), {"region": regions})
    assert response.status_code == 302
    backup = Backup.objects.get()
    make_backup(backup.pk)  # what the cluster runs
    backup.refresh_from_db()
    return backup


def test_an_operator_makes_a_backup_of_chosen_regions_and_the_master(
    operator_client, console, enqueued, django_capture_on_commit_callbacks
):
    backup = make(operator_client, django_capture_on_commit_callbacks, ["Bilbao", "partner:Lisbon", "Atlantis"])
    assert enqueued == [("sync.tasks.make_backup", (backup.pk,))]
    assert (backup.state, backup.created_by, backup.regions) == ("done", "otto", ["Bilbao", "partner:Lisbon"])
    assert [p.name for p in backup.files()] == ["backup_Bilbao.csv", "backup_Madrid.csv", "backup_partner:Lisbon.csv"]
    assert (backup.files()[0]).read_bytes() == (console / "backup_Bilbao.csv").read_bytes()  # the original format
    assert backup.size == sum(p.stat().st_size for p in backup.files())
    assert AuditEntry.objects.get().model == "backup"


def test_the_files_download_one_by_one_and_as_a_zip(
    operator_client, viewer, console, enqueued, django_capture_on_commit_callbacks
):
    backup = make(operator_client, django_capture_on_commit_callbacks, ["Bilbao"])
    operator_client.force_login(viewer)  # viewers may download
    page = operator_client.get(reverse("sync:backups")).content.decode()
    assert "backup_Bilbao.csv" in page and "Download all (zip)" in page and "Make a backup" not in page
    response = operator_client.get(reverse("sync:backup_file", args=[backup.pk, "backup_Bilbao.csv"]))
    body = b"".join(response.streaming_content)
    assert response["Content-Disposition"] == 'attachment; filename="backup_Bilbao.csv"'
    assert body == (console / "backup_Bilbao.csv").read_bytes()
    assert len(read_backup(io.StringIO(body.decode()), "backup_Bilbao.csv")) > 0
    response = operator_client.get(reverse("sync:backup_zip", args=[backup.pk]))
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as zipped:
        names = sorted(zipped.namelist())
        assert names == [f"{backup.folder}/backup_Bilbao.csv", f"{backup.folder}/backup_Madrid.csv"]
        assert zipped.read(names[0]) == body


@pytest.mark.parametrize("name", ["../../secret_key", "..", "backup_Nowhere.csv", "%2e%2e%2fsecret_key"])
def test_it_serves_nothing_but_the_backup_files(
    operator_client, console, enqueued, django_capture_on_commit_callbacks, name
):
    backup = make(operator_client, django_capture_on_commit_callbacks, ["Bilbao"])
    response = operator_client.get(f"/backups/{backup.pk}/files/{name}")
    assert response.status_code == 404


def test_an_operator_deletes_a_backup_and_its_files(
    operator_client, console, enqueued, django_capture_on_commit_callbacks
):
    backup = make(operator_client, django_capture_on_commit_callbacks, ["Bilbao"])
    path = backup.path
    response = operator_client.post(reverse("sync:delete_backup", args=[backup.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "No backup yet" in response.content.decode()
    assert not path.exists() and not Backup.objects.exists()


def test_viewers_cannot_make_or_delete_backups(viewer_client, console, enqueued):
    assert viewer_client.post(reverse("sync:make_backup")).status_code == 403
    backup = Backup.objects.create(folder="x", state="done")
    assert viewer_client.post(reverse("sync:delete_backup", args=[backup.pk])).status_code == 403
    assert Backup.objects.exists() and not enqueued


def test_the_list_polls_while_a_backup_is_written(viewer_client, console):
    Backup.objects.create(folder="b1", state="running")
    assert 'hx-trigger="every 2s"' in viewer_client.get(reverse("sync:backups")).content.decode()
    assert viewer_client.get(reverse("sync:backups"), HTTP_HX_REQUEST="true").status_code == 200
    Backup.objects.update(state="done")
    assert viewer_client.get(reverse("sync:backups"), HTTP_HX_REQUEST="true").status_code == 286


def test_an_unreadable_region_fails_the_backup_but_keeps_the_others(
    operator_client, console, enqueued, django_capture_on_commit_callbacks
):
    (console / "backup_Bilbao.csv").write_text("Bilbao,too,few\r\n")
    backup = make(operator_client, django_capture_on_commit_callbacks, ["Bilbao", "Malaga"])
    assert backup.state == "failed" and "Bilbao:" in backup.error
    assert [p.name for p in backup.files()] == ["backup_Madrid.csv", "backup_Malaga.csv"]


def test_downloads_neutralise_formulas_unless_the_original_format_is_asked(
    operator_client, console, enqueued, django_capture_on_commit_callbacks
):
    with (console / "backup_Bilbao.csv").open("a", newline="") as region:
        region.write("Bilbao,=cmd|' /C calc'!A0,evil,active,1,c,o,True,{}\r\n")
    backup = make(operator_client, django_capture_on_commit_callbacks, ["Bilbao"])
    url = reverse("sync:backup_file", args=[backup.pk, "backup_Bilbao.csv"])
    safe = b"".join(operator_client.get(url).streaming_content)
    original = b"".join(operator_client.get(url + "?format=original").streaming_content)
    assert original == (console / "backup_Bilbao.csv").read_bytes()
    assert b"Bilbao,=cmd|' /C calc'!A0,evil" in original
    assert b"Bilbao,'=cmd|' /C calc'!A0,evil" in safe
    assert safe.replace(b"'=cmd", b"=cmd") == original  # only that cell changed
    zipped = b"".join(operator_client.get(reverse("sync:backup_zip", args=[backup.pk])).streaming_content)
    with zipfile.ZipFile(io.BytesIO(zipped)) as archive:
        assert b"'=cmd" in archive.read(f"{backup.folder}/backup_Bilbao.csv")
