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


def test_add_users_issues_a_list_of_users_once_and_names_a_bad_row(tmp_path: Path):
    """`prana federation add-users --from farmers.csv`: every listed user gets a client certificate and a
    sealing pair under the federation's CA, a second run keeps them, and a bad row is one sentence."""
    import subprocess
    import sys

    path = create_federation(tmp_path / "fed", "beet", {"hub": "127.0.0.1:7000", "server-1": "127.0.0.1:7001"})
    farmers = tmp_path / "farmers.csv"
    farmers.write_text("bidder,region\n" + "".join(f"farmer{index:04d},north\n" for index in range(1, 6)))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "COLUMNS": "200"}

    def run(*args):
        return subprocess.run([sys.executable, "-m", "prana", "federation", "add-users", "--federation", str(path),
                               *args], capture_output=True, text=True, env=env, timeout=120)

    first = run("--from", str(farmers))
    assert first.returncode == 0, first.stderr
    assert "issued 5 user certificates" in first.stdout
    loaded = Federation.load(path)
    assert loaded.users() == [f"farmer{index:04d}" for index in range(1, 6)]
    ca = x509.load_pem_x509_certificate(loaded.ca_path.read_bytes())
    for name in loaded.users():
        certificate = x509.load_pem_x509_certificate((loaded.users_path / f"{name}.pem").read_bytes())
        certificate.verify_directly_issued_by(ca)
        assert (loaded.users_path / f"{name}-sealing.pem").is_file()
        assert stat.S_IMODE((loaded.users_path / f"{name}-key.pem").stat().st_mode) == 0o600
    assert loaded.identity("farmer0003") == (loaded.users_path / "farmer0003.pem",
                                             loaded.users_path / "farmer0003-key.pem")
    before = (loaded.users_path / "farmer0001.pem").read_bytes()
    farmers.write_text(farmers.read_text() + "farmer0006,south\n")
    again = run("--from", str(farmers))
    assert again.returncode == 0 and "issued 1 user certificates" in again.stdout and "5 were there already" in again.stdout
    assert (loaded.users_path / "farmer0001.pem").read_bytes() == before
    for text, sentence in [("name\nfarmer1\nFarmer 2\n", "farmers.csv row 3: 'Farmer 2' is not a user name"),
                           ("name\nfarmer1\nfarmer1\n", "farmers.csv row 3: farmer1 is listed twice"),
                           ("name\nserver-1\n", "farmers.csv row 2: server-1 is a party of the federation")]:
        farmers.write_text(text)
        refused = run("--from", str(farmers))
        assert refused.returncode == 4 and sentence in refused.stderr and "Traceback" not in refused.stderr
