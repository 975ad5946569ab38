"""Per-session link identities: the key and certificate that bind a session's brpc links to its members.

SPU's MPC link and every side link (a PSI) run over brpc with TLS, and yacl then believes the rank that a
message names. If brpc trusted the federation CA, any holder of a federation certificate who can reach an
engine port could join or intercept a committee's MPC traffic. So every member makes, for each session:

- a fresh EC P-256 key and a self-signed certificate (not a CA, with a subjectAltName for its engine host),
  kept in memory;
- sends the certificate in its HELLO, which travels over the federation's mutual-TLS control channel, so
  each certificate is bound to the federation identity that channel authenticated;
- gives each brpc link a trust file that holds exactly the session certificates of that link's other
  members (never the federation CA). A party outside the session, even one with a federation certificate,
  fails the TLS handshake on the engine port, in both directions.

brpc reads its key, certificate and trust file once, when the link is created. So `LinkIdentity.files` writes
them (0600, in a fresh 0700 temporary folder) only for the duration of `create_brpc` and removes the folder
when it returns or fails: a member killed later in the session leaves no key on disk.

Who learns what: a session certificate is public (it names the party and the session, nothing else). The
session key never leaves the member, and is forgotten when the session closes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from prana.errors import MalformedMessage, ProtocolError
from prana.files import write_private
from prana.pki import certificate_builder, subject_alt_names

MAX_CERTIFICATE_PEM = 8 * 1024
VALIDITY = dt.timedelta(days=30)   # the key dies with its session anyway
_BEGIN = "-----BEGIN CERTIFICATE-----"


@dataclass(frozen=True)
class LinkFiles:
    """Where brpc finds this member's session key and certificate, and the trust file of one link."""

    certificate: Path
    private_key: Path
    trust: Path


class LinkIdentity:
    """This member's key and self-signed certificate for one session's brpc links."""

    def __init__(self, party: str, session: str, host: str) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"prana link {party} {session}")])
        certificate = (
            certificate_builder(name, name, key.public_key(), validity=VALIDITY, digital_signature=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(subject_alt_names([host])), critical=False)
            .sign(key, hashes.SHA256())
        )
        self.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        self._key_pem: bytes | None = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption())
        self.folders: list[Path] = []   # every folder `files` made (each is gone once `files` returns)

    @property
    def closed(self) -> bool:
        return self._key_pem is None

    @contextlib.contextmanager
    def files(self, certificates: list[str]) -> Iterator[LinkFiles]:
        """The key, the certificate and a trust file that holds exactly `certificates` (PEMs checked by
        `check_link_certificate`), each 0600 in a new 0700 folder that is removed on leaving, on every path."""
        if self._key_pem is None:
            raise ProtocolError("the session is closed: its link key is gone", step="link")
        folder = Path(tempfile.mkdtemp(prefix="prana-link-"))   # mode 0700
        self.folders.append(folder)
        try:
            found = LinkFiles(folder / "link.pem", folder / "link-key.pem", folder / "trust.pem")
            write_private(found.private_key, self._key_pem)
            write_private(found.certificate, self.certificate_pem.encode())
            write_private(found.trust, "".join(certificates).encode())
            yield found
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Forget the session key (idempotent); links already made keep working until they are dropped."""
        self._key_pem = None


def check_link_certificate(peer: str, pem: object, *, session: str, step: str = "hello") -> str:
    """The session certificate a peer sent in its HELLO, checked and re-encoded: exactly one self-signed,
    currently valid, non-CA X.509 certificate with an EC P-256 key, at most MAX_CERTIFICATE_PEM bytes."""
    def refuse(what: str) -> MalformedMessage:
        return MalformedMessage(f"{peer} sent {what} for the engine link", peer=peer, task=session, step=step)

    if not isinstance(pem, str) or len(pem) > MAX_CERTIFICATE_PEM:
        raise refuse(f"no session certificate or one over {MAX_CERTIFICATE_PEM:,} bytes")
    if pem.count(_BEGIN) != 1:
        raise refuse("not exactly one session certificate")
    try:
        certificate = x509.load_pem_x509_certificate(pem.encode())
        key = certificate.public_key()
        certificate.verify_directly_issued_by(certificate)
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        raise refuse("a session certificate that does not parse or is not self-signed") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise refuse("a session certificate whose key is not EC P-256")
    if constraints.ca:
        raise refuse("a certificate authority in place of a session certificate")
    now = dt.datetime.now(dt.timezone.utc)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise refuse("a session certificate that is not valid now")
    return certificate.public_bytes(serialization.Encoding.PEM).decode()
