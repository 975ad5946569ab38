"""Federation files and PKI: what init writes, and one clear ConfigError for each broken file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from prana.config import Federation
from prana.errors import ConfigError
from prana.pki import create_federation


def test_init_writes_ca_keys_and_certificates(tmp_path: Path):
    path = create_federation(tmp_path / "f", "demo", {"bank": "127.0.0.1:7001", "authority": "10.0.0.5:7002"})
    federation = Federation.load(path)
    assert sorted(federation.parties) == ["authority", "bank"]
    for party in federation.parties:
        key = federation.private_key_path(party)
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        cert = x509.load_pem_x509_certificate(federation.certificate_path(party).read_bytes())
        ca = x509.load_pem_x509_certificate(federation.ca_path.read_bytes())
        assert cert.issuer == ca.subject
        cert.verify_directly_issued_by(ca)
    assert stat.S_IMODE((tmp_path / "f" / "ca-key.pem").stat().st_mode) == 0o600
    sans = x509.load_pem_x509_certificate(federation.certificate_path("authority").read_bytes()).extensions \
        .get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.0.0.5" in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    with pytest.raises(ConfigError, match="already holds a federation"):
        create_federation(tmp_path / "f", "demo", {"a": "127.0.0.1:1", "b": "127.0.0.1:2"})


def test_broken_federation_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        Federation.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Federation.load(bad)
    bad.write_text('name = "x"\nca_certificate = "ca.pem"\n[parties.a]\naddress = "nowhere"\ncertificate = "a.pem"\n')
    with pytest.raises(ConfigError, match="is not host:port"):
        Federation.load(bad)
    path = create_federation(tmp_path / "f", "demo", {"bank": "127.0.0.1:7001", "authority": "127.0.0.1:7002"})
    with pytest.raises(ConfigError, match="no party 'insurer'.*known: authority, bank"):
        Federation.load(path).party("insurer")
