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


def test_identity_finds_parties_and_users_and_names_both_kinds_when_neither(tmp_path: Path):
    from prana.pki import KeyPair, issue_certificate

    path = create_federation(tmp_path / "f", "demo", {"bank": "127.0.0.1:7001", "authority": "127.0.0.1:7002"})
    federation = Federation.load(path)
    assert federation.identity("bank") == (federation.certificate_path("bank"), federation.private_key_path("bank"))
    issue_certificate(KeyPair(federation.ca_path, tmp_path / "f" / "ca-key.pem"), federation.users_path, "alice", [],
                      client_only=True)
    assert federation.identity("alice") == (tmp_path / "f" / "users" / "alice.pem",
                                            tmp_path / "f" / "users" / "alice-key.pem")
    assert federation.certificate_of("alice") == tmp_path / "f" / "users" / "alice.pem"
    assert federation.users() == ["alice"]
    with pytest.raises(ConfigError, match=r"no party or user 'mallory' .*parties: authority, bank; users in .*: alice"):
        federation.identity("mallory")
    with pytest.raises(ConfigError, match="no party or user"):
        federation.certificate_of("../f/bank")               # a name, never a path
    (tmp_path / "f" / "users" / "alice-key.pem").unlink()    # a user's copy without the key
    with pytest.raises(ConfigError, match="private key of user 'alice' is missing"):
        federation.identity("alice")


def test_revoke_adds_to_one_signed_list_and_readers_see_each_change(tmp_path: Path):
    from prana.pki import load_revoked, revoke, serial_of

    path = create_federation(tmp_path / "f", "demo", {"bank": "127.0.0.1:7001", "authority": "127.0.0.1:7002"})
    federation = Federation.load(path)
    ca_key = tmp_path / "f" / "ca-key.pem"
    assert not federation.crl_path.exists() and load_revoked(federation) == set()
    assert revoke(federation, "bank", ca_key) == (federation.crl_path, True)
    assert load_revoked(federation) == {serial_of(federation.certificate_path("bank"))}
    assert revoke(federation, "authority", ca_key, reason="key-compromise")[1] is True
    assert revoke(federation, "bank", ca_key)[1] is False                      # once is enough
    assert load_revoked(federation) == {serial_of(federation.certificate_path(name)) for name in ("bank", "authority")}
    crl = x509.load_pem_x509_crl(federation.crl_path.read_bytes())
    ca = x509.load_pem_x509_certificate(federation.ca_path.read_bytes())
    assert crl.is_signature_valid(ca.public_key()) and len(list(crl)) == 2
    with pytest.raises(ConfigError, match="--reason must be one of"):
        revoke(federation, "bank", ca_key, reason="because")
    with pytest.raises(ConfigError, match="no party or user 'nobody'"):
        revoke(federation, "nobody", ca_key)
    foreign = Federation.load(create_federation(tmp_path / "g", "g", {"a": "127.0.0.1:1", "b": "127.0.0.1:2"}))
    revoke(foreign, "a", tmp_path / "g" / "ca-key.pem")                         # a list signed by another CA
    federation.crl_path.write_bytes((tmp_path / "g" / "crl.pem").read_bytes())
    with pytest.raises(ConfigError, match="not signed by the CA of federation 'demo'"):
        load_revoked(federation)
