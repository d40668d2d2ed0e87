"""How uploads reach a region (issue #18): glance-download where the target allows it and the region offers it,
a failed import streamed once instead (unless the target says glance-download only), and what the config says."""

import pytest

from sync.clouds.files import FileCloud, FileTargetSession
from sync.engine.config import ConfigError, load_config
from sync.engine.glancesync import GlanceSync
from sync.engine.model import GlanceSyncError, SyncConfig, TargetPolicy
from sync.engine.regions import parse_region
from sync.engine.reporter import RecordingReporter

MASTER = "Valladolid,small,001,active,1000,c1,tenant1id,True,{'type': 'a'}"


class ImportingSession(FileTargetSession):
    """The file cloud, with regions whose Glance offers glance-download; `fail` makes every import fail."""

    offered: set[str] = set()
    fail = False
    imports: list[str] = []

    def offers_glance_download(self, region):
        return region in self.offered

    def import_image(self, region, image, source, stage=None):
        for name in ("record created", "importing"):
            stage(name)
        if self.fail:
            raise GlanceSyncError(f"{region}: Import of {image.name} (glance-download) failed. Cause: refused")
        ImportingSession.imports.append(region)
        stage("verifying")
        stage("done")
        return self.upload_image(region, image, source)  # the file cloud's copy, standing for Glance's


class ImportingCloud(FileCloud):
    def session(self, target):
        return ImportingSession(self, target)


class StageReporter(RecordingReporter):
    def __init__(self):
        super().__init__()
        self.events = []

    def transfer_started(self, image_name, way):
        self.events.append(("transfer", image_name, way))

    def stage(self, image_name, stage):
        self.events.append(("stage", image_name, stage))


@pytest.fixture
def cloud(tmp_path, monkeypatch):
    for region in ("Valladolid", "Burgos", "Leon"):
        rows = MASTER + "\r\n" if region == "Valladolid" else ""
        (tmp_path / f"backup_{region}.csv").write_text(rows)
    (tmp_path / "backup_other:Lisbon.csv").write_text("")
    monkeypatch.setattr(ImportingSession, "offered", {"Burgos", "Lisbon"})
    monkeypatch.setattr(ImportingSession, "fail", False)
    monkeypatch.setattr(ImportingSession, "imports", [])
    return tmp_path


def engine(folder, transfer="auto", reporter=None):
    targets = {
        "master": TargetPolicy(name="master", tenant="tenant1", transfer=transfer),
        "other": TargetPolicy(name="other", tenant="tenant2"),
    }
    config = SyncConfig(master_region="Valladolid", targets=targets)
    return GlanceSync(config, ImportingCloud(folder), reporter or StageReporter())


def test_it_imports_where_the_master_targets_region_offers_it_and_streams_elsewhere(cloud):
    sync = engine(cloud)
    way = {r: sync.transfer_way(parse_region(r, sync.config)) for r in ("Burgos", "Leon", "Valladolid", "other:Lisbon")}
    assert way == {"Burgos": "glance-download", "Leon": "stream", "Valladolid": "stream", "other:Lisbon": "stream"}
    reporter = StageReporter()
    result = sync.sync_region("Burgos", reporter=reporter)
    assert result.ok and result.counters["uploads"] == 1 and ImportingSession.imports == ["Burgos"]
    assert "Burgos: small: the region's Glance imports it from Valladolid (glance-download)" in reporter.messages()
    assert reporter.events == [("transfer", "small", "glance-download")] + [
        ("stage", "small", stage) for stage in ("record created", "importing", "verifying", "done")
    ]
    reporter = StageReporter()
    assert sync.sync_region("other:Lisbon", reporter=reporter).ok  # another Keystone: streamed though offered
    assert reporter.events == [("transfer", "small", "stream")] and ImportingSession.imports == ["Burgos"]


def test_a_failed_import_is_streamed_once_instead_saying_so(cloud):
    ImportingSession.fail = True
    reporter = StageReporter()
    result = engine(cloud).sync_region("Burgos", reporter=reporter)
    assert result.ok and result.counters["uploads"] == 1
    assert reporter.messages(30) == [
        "Burgos: Import of small (glance-download) failed. Cause: refused. Streaming small through GlanceSync instead."
    ]
    assert reporter.events[0] == ("transfer", "small", "glance-download")
    assert reporter.events[-1] == ("transfer", "small", "stream")
    assert engine(cloud).sync_region("Burgos").counters["uploads"] == 0  # converged


def test_glance_download_only_never_streams(cloud):
    ImportingSession.fail = True
    failed = engine(cloud, "glance-download").sync_region("Burgos")
    assert not failed.ok and "Import of small (glance-download) failed" in failed.error
    unavailable = engine(cloud, "glance-download").sync_region("Leon")
    assert not unavailable.ok and "does not offer glance-download" in unavailable.error
    assert engine(cloud, "glance-download").planned_transfer(parse_region("Leon", engine(cloud).config)) == "none"


def test_stream_is_obeyed(cloud):
    sync = engine(cloud, "stream")
    assert sync.transfer_way(parse_region("Burgos", sync.config)) == "stream"
    assert sync.sync_region("Burgos").ok and ImportingSession.imports == []


def test_a_driver_without_glance_download_streams(tmp_path):
    (tmp_path / "backup_Valladolid.csv").write_text(MASTER + "\r\n")
    (tmp_path / "backup_Burgos.csv").write_text("")
    config = SyncConfig(master_region="Valladolid", targets={"master": TargetPolicy(name="master", tenant="t")})
    sync = GlanceSync(config, FileCloud(tmp_path), RecordingReporter())
    assert sync.transfer_way(parse_region("Burgos", config)) == "stream"


def conf(text):
    return load_config(text="[main]\nmaster_region = A\n" + text, require_credentials=False)


def test_the_config_reads_transfer_per_target_with_auto_as_the_default():
    config = conf("[master]\ntransfer = Glance-Download\n[other]\ntransfer = stream\n[third]\n")
    assert {n: t.transfer for n, t in config.targets.items()} == {
        "master": "glance-download",
        "other": "stream",
        "third": "auto",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[master]\ntransfer = scp\n", "<text>: [master] transfer: 'scp' is not auto, stream or glance-download"),
        ("[other]\ntransfer = glance-download\n", "<text>: [other] transfer: glance-download: only the master"),
        ("[DEFAULT]\ntransfer = glance-download\n[other]\n", "<text>: [other] transfer: glance-download: only"),
    ],
)
def test_bad_transfer_values_are_refused_naming_the_section(text, message):
    with pytest.raises(ConfigError) as error:
        conf(text)
    assert str(error.value).startswith(message)
