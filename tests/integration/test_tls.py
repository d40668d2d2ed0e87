"""TLS: a target whose Keystone and Glance answer HTTPS with a private CA, as a `cacert` or `insecure` target sees.

HTTPS proxies (tests/realstack/faultproxy.py with a server context) sit in front of the source Keystone and of
the RegionTwo Glance, which is registered again as region RegionTLS with an https:// image endpoint.
"""

import datetime
import ipaddress
import ssl
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sync.clouds.openstack import OpenStackCloud
from sync.engine.config import load_config
from sync.engine.glancesync import GlanceSync
from sync.engine.model import GlanceSyncError
from sync.engine.reporter import RecordingReporter
from tests.integration.regions import region_behind_proxy
from tests.integration.test_openstack_sync import create, images_named
from tests.realstack.faultproxy import FaultProxy
from tests.realstack.stack import image_bytes

pytestmark = pytest.mark.integration


def self_signed(directory):
    """A certificate for 127.0.0.1 that is its own CA: (cert path, server context)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "glancesync test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "ca.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return cert_path, context


@pytest.fixture(scope="module")
def tls_site(realstack, tmp_path_factory):
    """(https Keystone URL, CA file): the source Keystone over HTTPS, with RegionTLS = RegionTwo over HTTPS."""
    cert_path, context = self_signed(tmp_path_factory.mktemp("tls"))
    source = realstack.connect("source", "RegionOne")
    keystone_port = realstack.ports["source-keystone"]
    with FaultProxy(keystone_port, tls=context) as keystone:
        keystone.thread.name = "tls-keystone"
        with region_behind_proxy(source, "RegionTLS", realstack.glance("RegionTwo").port, tls=context):
            yield f"{keystone.url}/v3", cert_path


@pytest.fixture
def prefix():
    return f"tls{uuid.uuid4().hex[:8]}-"


def sync_tls_region(realstack, tls_site, prefix, tls_option):
    url, _ = tls_site
    conf = (
        f"[main]\nmaster_region = RegionOne\n\n[master]\nuser = admin\npassword = {realstack.passwords['source']}\n"
        f"keystone_url = {url}\ntenant = admin\nuse_keystone_v3 = True\n{tls_option}\n"
        f"metadata_condition = image.is_public and image.name.startswith('{prefix}')\n"
    )
    config = load_config(text=conf, environ={})
    return GlanceSync(config, OpenStackCloud(), RecordingReporter()).sync_region("RegionTLS")


def test_a_target_with_its_ca_bundle_syncs_over_https(realstack, tls_site, prefix):
    image = create(realstack.connect("source", "RegionOne"), prefix + "secure", image_bytes(512 * 1024))
    result = sync_tls_region(realstack, tls_site, prefix, f"cacert = {tls_site[1]}")
    assert result.ok and result.counters["uploads"] == 1, result.error
    copy = images_named(realstack.connect("source", "RegionTwo"), prefix)[prefix + "secure"]
    assert copy.checksum == image.checksum


def test_a_target_without_the_ca_fails_with_a_certificate_error(realstack, tls_site, prefix):
    with pytest.raises(GlanceSyncError) as failure:  # the master's login fails: the run stops
        sync_tls_region(realstack, tls_site, prefix, "")
    message = str(failure.value)
    assert message.startswith("target master: cannot authenticate: ") and "certificate verify failed" in message
    assert realstack.passwords["source"] not in message


def test_an_insecure_target_skips_verification(realstack, tls_site, prefix):
    create(realstack.connect("source", "RegionOne"), prefix + "trusting", image_bytes(4096))
    result = sync_tls_region(realstack, tls_site, prefix, "insecure = True")
    assert result.ok and result.counters["uploads"] == 1, result.error
