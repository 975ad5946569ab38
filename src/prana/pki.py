"""The federation's certificate authority and the parties' keys and certificates.

`prana federation init` calls :func:`create_ca` once and :func:`issue_certificate` once per party. Every
link between parties is mutual TLS under this CA: a peer whose certificate was issued by another CA is
refused. Keys are EC P-256 and written with mode 0600. A party's certificate carries a subjectAltName for
the host of its own federation address and for its name, nothing else: a party on the same machine as
another cannot pose as it by address (brpc verifies the host, so loopback federations use `127.0.0.1`).

Revocation: `prana federation revoke NAME` calls :func:`revoke`, which adds the serial of NAME's certificate
to `crl.pem` beside the federation file, signed by the CA. :func:`apply_revocation` makes an `ssl.SSLContext`
check the peer's certificate against that list during the handshake; :func:`load_revoked` gives the revoked
serials (re-read whenever the file changes) to services that check a caller themselves, such as the hub.
Every party needs the current crl.pem in its copy of the federation folder.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from prana.errors import ConfigError
from prana.files import write_private

if TYPE_CHECKING:
    from prana.config import Federation

VALIDITY = dt.timedelta(days=825)


@dataclass(frozen=True)
class KeyPair:
    """Paths to a PEM certificate and its PEM private key."""

    certificate: Path
    private_key: Path


def _write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def certificate_builder(subject: x509.Name, issuer: x509.Name, public_key: Any, *,
                        validity: dt.timedelta = VALIDITY, **usage: bool) -> x509.CertificateBuilder:
    """A certificate's common skeleton: names, key, a random serial, validity from five minutes ago (clocks
    differ), not a CA, and with `usage` (e.g. `key_agreement=True`) the critical key usage of those flags only."""
    now = dt.datetime.now(dt.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + validity))
    if usage.pop("ca", False):
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    if usage:
        flags = {flag: False for flag in ("digital_signature", "content_commitment", "key_encipherment",
                                          "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
                                          "encipher_only", "decipher_only")}
        builder = builder.add_extension(x509.KeyUsage(**{**flags, **usage}), critical=True)
    return builder


def create_ca(directory: Path, federation_name: str) -> KeyPair:
    """Create a self-signed CA certificate and key in `directory` (ca.pem, ca-key.pem)."""
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"prana CA {federation_name}")])
    cert = certificate_builder(name, name, key.public_key(), ca=True, digital_signature=True, key_cert_sign=True,
                               crl_sign=True).sign(key, hashes.SHA256())
    pair = KeyPair(directory / "ca.pem", directory / "ca-key.pem")
    write_private(pair.private_key, _key_pem(key))
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


def subject_alt_names(hosts: list[str]) -> list[x509.GeneralName]:
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
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client_only else [
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    builder = certificate_builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), ca_cert.subject,
                                  key.public_key()).add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    sans = subject_alt_names(sorted(set(hosts) | {name}))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    pair = KeyPair(directory / f"{name}.pem", directory / f"{name}-key.pem")
    write_private(pair.private_key, _key_pem(key))
    _write_public(pair.certificate, cert.public_bytes(serialization.Encoding.PEM))
    _issue_sealing(ca_cert, ca_key, sealing_pair(pair), name)
    return pair


def issue_users(federation: Any, names: list[str], ca_key: Path, *, directory: Path | None = None,
                on_issued: Any = None) -> list[str]:
    """Client certificates (and sealing pairs) for many users at once, in `directory` (default: the
    federation's users folder). A user whose certificate is there already is kept as it is; returns the
    names issued now. `on_issued(name)` after each."""
    directory = Path(directory) if directory is not None else federation.users_path
    ca = KeyPair(federation.ca_path, Path(ca_key))
    issued = []
    for name in names:
        if (directory / f"{name}.pem").exists():
            continue
        issue_certificate(ca, directory, name, [], client_only=True)
        issued.append(name)
        if on_issued is not None:
            on_issued(name)
    return issued


# -- sealing keys -------------------------------------------------------------------------------------------

SEALING_UNIT = "sealing"


def sealing_pair(pair: KeyPair) -> KeyPair:
    """The sealing key pair that belongs beside a TLS key pair: NAME-sealing.pem and NAME-sealing-key.pem.

    Results are sealed to a party's or user's *sealing* certificate, never to its TLS certificate: the TLS
    key is loaded by long-running services and signs, while the sealing key only opens results (ECDH). A
    leaked TLS key then opens no stored result, and the sealing key can be kept offline by an analyst."""
    key = pair.private_key
    key_name = key.name[: -len("-key.pem")] + "-sealing-key.pem" if key.name.endswith("-key.pem") \
        else key.stem + "-sealing" + key.suffix
    return KeyPair(pair.certificate.with_name(pair.certificate.stem + "-sealing.pem"), key.with_name(key_name))


def _issue_sealing(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, pair: KeyPair, name: str) -> None:
    """A P-256 key for ECDH only (key usage: key agreement), certified by the CA for `name`."""
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, SEALING_UNIT)])
    cert = certificate_builder(subject, ca_cert.subject, key.public_key(), key_agreement=True).sign(ca_key, hashes.SHA256())
    write_private(pair.private_key, _key_pem(key))
    _write_public(pair.certificate, cert.public_bytes(serialization.Encoding.PEM))


def is_sealing_certificate(certificate: x509.Certificate) -> bool:
    """True for a certificate made by `_issue_sealing`: key agreement only, in the sealing unit."""
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return False
    units = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    return usage.key_agreement and not usage.digital_signature and [unit.value for unit in units] == [SEALING_UNIT]


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
        pair = issue_certificate(ca, directory, party, [host])   # only its own address (and its name)
        parties[party] = Party(address=address, certificate=pair.certificate.name,
                               private_key=pair.private_key.name)
    federation = Federation(name=name, ca_certificate=ca.certificate.name, parties=parties,
                            root=directory.resolve())
    return federation.save(directory / "federation.toml")


# -- revocation ---------------------------------------------------------------------------------------------

REASONS = {"unspecified": x509.ReasonFlags.unspecified, "key-compromise": x509.ReasonFlags.key_compromise,
           "affiliation-changed": x509.ReasonFlags.affiliation_changed,
           "superseded": x509.ReasonFlags.superseded,
           "cessation-of-operation": x509.ReasonFlags.cessation_of_operation}
X509_V_ERR_CERT_REVOKED = 23   # OpenSSL's verify code for "certificate revoked"


def serial_of(certificate: bytes | Path) -> int:
    """The serial number of a certificate given as PEM or DER bytes, or as the path of a PEM file."""
    data = certificate.read_bytes() if isinstance(certificate, Path) else certificate
    try:
        cert = (x509.load_pem_x509_certificate(data) if data.lstrip().startswith(b"-----")
                else x509.load_der_x509_certificate(data))
    except ValueError:
        raise ConfigError("a certificate could not be read (it is not PEM or DER)") from None
    return int(cert.serial_number)


def _read_crl(federation: "Federation") -> x509.CertificateRevocationList | None:
    path = federation.crl_path
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the revocation list {path}: {exc.strerror or exc}") from None
    try:
        crl = x509.load_pem_x509_crl(data)
        ca = x509.load_pem_x509_certificate(federation.ca_path.read_bytes())
    except (OSError, ValueError):
        raise ConfigError(f"the revocation list {path} is not a PEM certificate revocation list") from None
    if crl.issuer != ca.subject or not crl.is_signature_valid(ca.public_key()):  # type: ignore[arg-type]
        raise ConfigError(f"the revocation list {path} is not signed by the CA of federation {federation.name!r}")
    return crl


_cache: dict[Path, tuple[tuple[int, int], frozenset[int]]] = {}
_cache_lock = threading.Lock()


def load_revoked(federation: "Federation") -> set[int]:
    """The serials revoked in the federation's crl.pem (empty if there is none). The file is parsed again
    only when it changes, so a service can call this for every caller and see a revocation at once."""
    path = federation.crl_path
    try:
        info = path.stat()
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise ConfigError(f"cannot read the revocation list {path}: {exc.strerror or exc}") from None
    stamp = (info.st_mtime_ns, info.st_size)
    with _cache_lock:
        cached = _cache.get(path)
    if cached is not None and cached[0] == stamp:
        return set(cached[1])
    crl = _read_crl(federation)
    serials = frozenset(int(entry.serial_number) for entry in crl) if crl is not None else frozenset()
    with _cache_lock:
        _cache[path] = (stamp, serials)
    return set(serials)


def revoke(federation: "Federation", name: str, ca_key: Path, *, reason: str = "unspecified") -> tuple[Path, bool]:
    """Add the certificate of party or user `name` to crl.pem (signed by the CA); returns the CRL's path
    and False if it was revoked already. The CRL is replaced atomically, so a reader never sees half of it."""
    if reason not in REASONS:
        raise ConfigError(f"--reason must be one of {', '.join(REASONS)}, not {reason!r}")
    ca_cert, key = _load_ca(KeyPair(federation.ca_path, ca_key))
    serial = serial_of(federation.certificate_of(name))
    previous = _read_crl(federation)
    entries = list(previous) if previous is not None else []
    if any(int(entry.serial_number) == serial for entry in entries):
        return federation.crl_path, False
    now = dt.datetime.now(dt.timezone.utc)
    entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(now)
    if reason != "unspecified":
        entry = entry.add_extension(x509.CRLReason(REASONS[reason]), critical=False)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(now - dt.timedelta(minutes=5))
               .next_update(now + VALIDITY))      # OpenSSL refuses every certificate once a CRL is past due
    for old in entries:
        builder = builder.add_revoked_certificate(old)
    builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(key, hashes.SHA256())
    path = federation.crl_path
    fd, temporary = tempfile.mkstemp(prefix=".crl-", dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(crl.public_bytes(serialization.Encoding.PEM))
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)
    return path, True


class RevokedCertificate(ssl.SSLError):
    """A TLS handshake failed because the peer's certificate is on the federation's revocation list."""

    def __str__(self) -> str:          # ssl.SSLError would print the tuple of its arguments
        return str(self.args[0]) if self.args else "a certificate is revoked"


class FederationContext(ssl.SSLContext):
    """An SSLContext that names a revoked peer certificate in its handshake error, and that also checks the
    peer against the current crl.pem after each handshake (a context that lives longer than a revocation
    still refuses the revoked peer). `federation` is set by :func:`apply_revocation`."""

    federation: "Federation | None" = None

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:  # type: ignore[override]
        federation = self.federation
        try:
            wrapped = super().wrap_socket(sock, *args, **kwargs)
        except ssl.SSLCertVerificationError as exc:
            if exc.verify_code == X509_V_ERR_CERT_REVOKED and federation is not None:
                raise RevokedCertificate(revoked_sentence(federation)) from None
            raise
        if federation is not None:
            der = wrapped.getpeercert(binary_form=True)
            if der and serial_of(der) in load_revoked(federation):
                wrapped.close()
                raise RevokedCertificate(revoked_sentence(federation))
        return wrapped


def revoked_sentence(federation: "Federation", name: str | None = None) -> str:
    """How a refusal of a revoked certificate reads (`name`: whose, when known)."""
    whose = f"the certificate of {name!r}" if name else "its certificate"
    return f"{whose} is revoked in federation {federation.name!r} ({federation.crl_path.name})"


def apply_revocation(context: ssl.SSLContext, federation: "Federation") -> None:
    """Make `context` refuse peers whose certificate is on the federation's crl.pem, if that file exists.

    OpenSSL then fails the handshake with a revoked peer (VERIFY_CRL_CHECK_LEAF); a FederationContext also
    says so in its error and re-checks the current list after each handshake.
    """
    if isinstance(context, FederationContext):
        context.federation = federation
    if not federation.crl_path.is_file():
        return
    _read_crl(federation)   # a broken or foreign CRL is one ConfigError sentence, not a handshake failure later
    try:
        context.load_verify_locations(cafile=str(federation.crl_path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the revocation list {federation.crl_path}: {exc}") from None
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def describe_federation(federation: "Federation") -> dict[str, Any]:
    """What `prana federation show` prints: public facts only (names, addresses, validity, which key files
    are present here, revocations); never a key."""
    revoked = load_revoked(federation)

    def certificate_facts(path: Path) -> dict[str, Any]:
        if not path.is_file():
            return {"valid_until": "missing", "expired": True, "revoked": False, "serial": None}
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
        until = certificate.not_valid_after_utc
        return {"valid_until": until.isoformat(), "expired": until < dt.datetime.now(dt.timezone.utc),
                "revoked": certificate.serial_number in revoked, "serial": f"{certificate.serial_number:x}"}

    def keys_here(certificate: Path, key: Path) -> list[str]:
        sealing = sealing_pair(KeyPair(certificate, key))
        return [kind for kind, path in (("tls", key), ("sealing", sealing.private_key)) if path.is_file()]

    ca = x509.load_pem_x509_certificate(federation.ca_path.read_bytes())
    parties = []
    for name, party in federation.parties.items():
        certificate = federation.certificate_path(name)
        key = federation.path(party.private_key) if party.private_key else Path("/nonexistent")
        parties.append({"name": name, "role": "party", "address": party.address,
                        "certificate": str(certificate), **certificate_facts(certificate),
                        "keys_here": keys_here(certificate, key)})
    users = []
    for name in federation.users():
        certificate = federation.users_path / f"{name}.pem"
        users.append({"name": name, "role": "user", "address": None, "certificate": str(certificate),
                      **certificate_facts(certificate),
                      "keys_here": keys_here(certificate, federation.users_path / f"{name}-key.pem")})
    return {"name": federation.name, "file": str(federation.file), "version": federation.version,
            "ca": {"certificate": str(federation.ca_path), "subject": ca.subject.rfc4514_string(),
                   "valid_until": ca.not_valid_after_utc.isoformat()},
            "parties": parties, "users": users, "ca_key_here": (federation.root / "ca-key.pem").is_file(),
            "crl": str(federation.crl_path) if federation.crl_path.is_file() else None}
