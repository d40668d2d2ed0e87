"""The connection test of Connect a cloud (sync.clouds.probe): each failing step in plain words, never an
exception's text, against a small Keystone + Glance on loopback (tests/fake_keystone.py). The real Keystone is
in tests/integration/test_connect_realstack.py."""

import socket

from sync.clouds import probe as probe_module
from sync.clouds.probe import FAILED, OK, WARNING, probe
from sync.engine.model import TargetPolicy
from tests.alert_receivers import free_port
from tests.fake_keystone import FakeKeystone
from tests.integration.test_tls import self_signed

PASSWORD = "probe-Pa55word-not-real"


def policy(url: str, password: str = PASSWORD, **options) -> TargetPolicy:
    return TargetPolicy(name="master", user="admin", password=password, keystone_url=url, tenant="admin", **options)


def checks(result) -> list[tuple[str, str, str]]:
    return [(check.what, check.state, check.detail) for check in result.checks]


def assert_plain(result) -> None:
    """No secret and no exception text: no password, no Python or library words."""
    text = " ".join(check.detail for check in result.checks)
    for word in (PASSWORD, "wrong-one", "Traceback", "HTTPConnectionPool", "Max retries", "Errno", "keystoneauth"):
        assert word not in text, text


def test_it_logs_in_lists_the_image_regions_and_asks_each_glance():
    with FakeKeystone(PASSWORD, dead_regions=["RegionDown"]) as keystone:
        result = probe(policy(keystone.auth_url), timeout=2)
    assert result.ok and result.regions == ["RegionDown", "RegionOne", "RegionTwo"]
    found = checks(result)
    assert found[0] == ("Keystone login", OK, f"logged in to {keystone.url[7:]} as admin, project admin")
    assert found[1] == ("Glance in the catalog", OK, "image endpoints in 3 region(s): RegionDown, RegionOne, RegionTwo")
    assert found[2][:2] == ("Glance of RegionDown", WARNING) and "refused the connection" in found[2][2]
    assert found[3] == ("Glance of RegionOne", OK, f"{keystone.url}/glance/RegionOne answers")
    assert_plain(result)


def test_it_says_a_wrong_password_is_a_401():
    with FakeKeystone(PASSWORD) as keystone:
        result = probe(policy(keystone.auth_url, password="wrong-one"), timeout=2)
    assert not result.ok and result.regions == []
    assert checks(result) == [
        (
            "Keystone login",
            FAILED,
            "Keystone refused the login (HTTP 401): wrong user name, password or project (or their domains)",
        )
    ]
    assert_plain(result)


def test_it_says_when_the_catalog_has_no_glance():
    with FakeKeystone(PASSWORD, regions=()) as keystone:
        result = probe(policy(keystone.auth_url), timeout=2)
    assert not result.ok
    assert checks(result)[-1] == (
        "Glance in the catalog",
        FAILED,
        "no Glance (image service) in the catalog: the project sees no public image endpoint",
    )


def test_it_says_why_keystone_is_unreachable(monkeypatch):
    port = free_port()
    refused = probe(policy(f"http://127.0.0.1:{port}/v3"), timeout=2)
    assert (
        checks(refused)[0][2] == f"unreachable: 127.0.0.1:{port} refused the connection (nothing listens on that port?)"
    )
    dns = probe(policy("http://keystone.invalid:5000/v3"), timeout=2)
    assert checks(dns)[0][2] == "unreachable: the host name keystone.invalid cannot be resolved (DNS)"
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        silent_port = silent.getsockname()[1]
        monkeypatch.setattr(probe_module, "PROBE_TIMEOUT", 1)
        slow = probe(policy(f"http://127.0.0.1:{silent_port}/v3"))
    assert checks(slow)[0][2] == f"unreachable: 127.0.0.1:{silent_port} did not answer within 1 s (timeout)"
    for result in (refused, dns, slow):
        assert not result.ok and result.checks[0].state == FAILED
        assert_plain(result)


def test_it_says_when_the_url_is_not_a_keystone():
    with FakeKeystone(PASSWORD) as keystone:
        result = probe(policy(f"{keystone.url}/nothing/v3"), timeout=2)
    assert checks(result)[0][2] == (
        f"no Keystone answers at {keystone.url}/nothing/v3: check the URL (it usually ends in :5000/v3 or /identity/v3)"
    )


def test_it_tells_an_untrusted_certificate_and_accepts_the_ca_or_insecure(tmp_path):
    ca, context = self_signed(tmp_path)
    with FakeKeystone(PASSWORD, tls=context) as keystone:
        untrusted = probe(policy(keystone.auth_url), timeout=2)
        with_ca = probe(policy(keystone.auth_url, cacert=str(ca)), timeout=2)
        insecure = probe(policy(keystone.auth_url, insecure=True), timeout=2)
        missing = probe(policy(keystone.auth_url, cacert=str(tmp_path / "nope.pem")), timeout=2)
    host = keystone.url[len("https://") :]
    assert checks(untrusted) == [
        (
            "Keystone login",
            FAILED,
            f"TLS: the certificate of {host} is not trusted. Give the CA certificate file that signed it, "
            "or skip TLS verification (test clouds only)",
        )
    ]
    assert with_ca.ok and insecure.ok and with_ca.regions == ["RegionOne", "RegionTwo"]
    assert checks(missing)[0][2] == (
        f"TLS: the CA certificate file {tmp_path / 'nope.pem'} does not exist on the GlanceSync server"
    )


def test_it_never_shows_credentials_of_the_url():
    port = free_port()
    result = probe(policy(f"http://user:secret-in-url@127.0.0.1:{port}/v3"), timeout=2)
    assert "secret-in-url" not in checks(result)[0][2] and f"127.0.0.1:{port}" in checks(result)[0][2]
