"""The federation's certificate authority and the parties' keys and certificates.

`prana federation init` calls :func:`create_ca` once and :func:`issue_certificate` once per party. Every
link between parties is mutual TLS under this CA: a peer whose certificate was issued by another CA is
refused. Keys are EC P-256 and written with mode 0600; certificates carry a subjectAltName for every
address the party listens on (brpc verifies the host, so `IP:127.0.0.1` is needed for loopback runs).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from prana.errors import ConfigError

VALIDITY = dt.timedelta(days=825)


@dataclass(frozen=True)
class KeyPair:
    """Paths to a PEM certificate and its PEM private key."""

    certificate: Path
    private_key: Path


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret file that only its owner can read, without a window where it is world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def create_ca(directory: Path, federation_name: str) -> KeyPair:
    """Create a self-signed CA certificate and key in `directory` (ca.pem, ca-key.pem)."""
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"prana CA {federation_name}")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    pair = KeyPair(directory / "ca.pem", directory / "ca-key.pem")
    _write_private(pair.private_key, _key_pem(key))
    _write_public(pair.certificate, cert.public_bytes(serialization.Encoding.PEM))
    return pair


def _load_ca(ca: KeyPair) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    try:
        cert = x509.load_pem_x509_certificate(ca.certificate.read_bytes())
        key = serialization.load_pem_private_key(ca.private_key.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the federation CA at {ca.certificate}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"the CA key at {ca.private_key} is not an EC key")
    return cert, key


def _subject_alt_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue_certificate(ca: KeyPair, directory: Path, name: str, hosts: list[str],
                      *, client_only: bool = False) -> KeyPair:
    """Issue a key and certificate for party or user `name`, valid for the given hostnames or IPs.

    Party certificates serve both TLS sides (server and client auth); a user's certificate
    (`client_only=True`) can only authenticate as a client.
    """
    ca_cert, ca_key = _load_ca(ca)
    key = _new_key()
    now = dt.datetime.now(dt.timezone.utc)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client_only else [
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    sans = _subject_alt_names(sorted(set(hosts) | {name}))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    pair = KeyPair(directory / f"{name}.pem", directory / f"{name}-key.pem")
    _write_private(pair.private_key, _key_pem(key))
    _write_public(pair.certificate, cert.public_bytes(serialization.Encoding.PEM))
    return pair


def create_federation(directory: Path, name: str, addresses: dict[str, str]) -> Path:
    """Write a new federation into `directory`: CA, one key and certificate per party, federation.toml.

    `addresses` maps each party name to its `host:port`. Returns the path of the federation file.
    """
    from prana.config import Federation, Party

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "federation.toml").exists() or (directory / "ca.pem").exists():
        raise ConfigError(f"{directory} already holds a federation; choose an empty folder")
    ca = create_ca(directory, name)
    parties: dict[str, Party] = {}
    for party, address in addresses.items():
        host = address.rpartition(":")[0]
        pair = issue_certificate(ca, directory, party, [host, "localhost", "127.0.0.1"])
        parties[party] = Party(address=address, certificate=pair.certificate.name,
                               private_key=pair.private_key.name)
    federation = Federation(name=name, ca_certificate=ca.certificate.name, parties=parties,
                            root=directory.resolve())
    return federation.save(directory / "federation.toml")
