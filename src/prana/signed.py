"""Signed statements that pass through the hub: tasks (signed by their requester) and results (signed by the
station that sends them, then sealed to their recipient).

The hub stores and forwards both, and it is not trusted with either: it could forge a task, change one, replay
one, or swap one station's sealed result for another's. Signatures make each of these detectable by the party
that acts on the statement.

**Tasks.** The requester signs the task's content with the private key of its federation certificate
(ECDSA P-256, SHA-256) and sends the envelope

    {"body": <canonical JSON text of TaskBody>, "signature": <base64 DER>, "certificate": <PEM>}

The task id is the first 24 hex digits of SHA-256(body), so the id names the content. A station acts only
on a task whose envelope opens (`open_task`): the certificate is issued by the federation CA, is valid now,
is not revoked, and names the requester; the signature holds; the id matches; the task has not expired. The
station then uses the body and nothing the hub added. Replays (the same signed task twice) are refused by
the station, which remembers the ids it has handled.

**Results.** A station signs (task, sender, recipient, name, SHA-256 of the payload) and seals header,
signature and payload together to the recipient (`prana.hub.sealing`). The recipient opens the seal, checks
the header against what it asked for, and checks the signature with the sender's federation certificate
(`open_result`): the hub can neither read a result nor substitute one.

Canonical JSON: sorted keys, no spaces, UTF-8, no NaN.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import struct
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from prana.errors import ConfigError, MalformedMessage

TASK_VERSION = 1
TASK_ID = re.compile(r"^[0-9a-f]{24}$")
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
CLOCK_SKEW = 300.0                  # seconds a task's creation time may lie in the future (clocks differ)
MAX_TASK_BYTES = 256 * 1024
MAX_CERTIFICATE_BYTES = 16 * 1024


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def task_id_of(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:24]


def check_task_id(task_id: str) -> str:
    """A task id as the hub and the stations use it (24 lower-case hex digits), or a ConfigError."""
    if not isinstance(task_id, str) or not TASK_ID.match(task_id):
        raise ConfigError(f"{str(task_id)[:40]!r} is not a task id (24 hexadecimal digits)")
    return task_id


class TaskBody(BaseModel):
    """What a requester signs: everything a station acts on."""

    model_config = ConfigDict(extra="forbid", strict=True)

    version: int = TASK_VERSION
    analysis: str = Field(pattern=NAME)
    requester: str = Field(pattern=NAME)
    parameters: dict[str, Any] = Field(default_factory=dict)
    stations: dict[str, str] = Field(min_length=1, description="station name -> dataset name")
    recipients: list[str] = Field(min_length=1)
    created: float
    timeout: float = Field(gt=0, le=7 * 24 * 3600)
    nonce: str = Field(pattern=r"^[0-9a-f]{32}$")
    sealing_certificate: str = Field("", max_length=MAX_CERTIFICATE_BYTES)   # results for the requester

    @property
    def expires(self) -> float:
        return self.created + self.timeout


# -- keys and certificates ------------------------------------------------------------------------------------

def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError("the private key cannot be read (not an unencrypted PEM key)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("the private key is not an EC key")
    return key


def sign(private_key_pem: bytes, data: bytes) -> bytes:
    return load_private_key(private_key_pem).sign(data, ec.ECDSA(hashes.SHA256()))


def verified_certificate(federation: Any, pem: bytes | str, name: str, *, what: str,
                         sealing: bool = False) -> x509.Certificate:
    """The certificate in `pem`, after checking that the federation CA issued it, that it is valid now and not
    revoked, and that it names `name`; with `sealing`, that it is a sealing certificate, and without, that it
    is not. Every failure is one MalformedMessage sentence about `what`."""
    data = pem.encode() if isinstance(pem, str) else pem
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise MalformedMessage(f"{what} carries a certificate that is too large")
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise MalformedMessage(f"{what} carries no readable certificate") from None
    try:
        ca = x509.load_pem_x509_certificate(federation.ca_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the federation CA at {federation.ca_path}: {exc}") from None
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise MalformedMessage(f"{what} carries a certificate that the CA of federation {federation.name!r} did "
                               "not issue") from None
    now = time.time()
    if not certificate.not_valid_before_utc.timestamp() <= now <= certificate.not_valid_after_utc.timestamp():
        raise MalformedMessage(f"{what} carries a certificate that is not valid now")
    names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not names or names[0].value != name:
        raise MalformedMessage(f"{what} carries the certificate of {names[0].value if names else 'nobody'!r}, "
                               f"not of {name!r}")
    if certificate.serial_number in _revoked(federation):
        raise MalformedMessage(f"{what} carries the certificate of {name!r}, which the federation has revoked")
    from prana.pki import is_sealing_certificate

    if is_sealing_certificate(certificate) != sealing:
        kind = "a sealing certificate" if sealing else "a signing (TLS) certificate"
        raise MalformedMessage(f"{what} carries a certificate of {name!r} that is not {kind}")
    return certificate


def _revoked(federation: Any) -> set[int]:
    try:
        from prana.pki import load_revoked
    except ImportError:          # a prana without revocation lists
        return set()
    return set(load_revoked(federation))


def check_signature(certificate: x509.Certificate, data: bytes, signature: bytes, *, what: str) -> None:
    public = certificate.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise MalformedMessage(f"{what} is signed with a certificate that has no EC key")
    try:
        public.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise MalformedMessage(f"{what} does not match its signature: it was forged or altered") from None


# -- tasks ------------------------------------------------------------------------------------------------------

def make_task(private_key_pem: bytes, certificate_pem: bytes, *, analysis: str, requester: str,
              parameters: dict[str, Any], stations: dict[str, str], recipients: list[str],
              timeout: float, sealing_certificate_pem: bytes = b"") -> dict[str, str]:
    """A signed task envelope, ready to submit to the hub. The requester's sealing certificate goes inside
    the signed content, so the hub cannot make a station seal the requester's results to another key."""
    body = TaskBody(analysis=analysis, requester=requester, parameters=parameters, stations=dict(stations),
                    recipients=list(recipients), created=time.time(), timeout=float(timeout),
                    nonce=secrets.token_hex(16), sealing_certificate=sealing_certificate_pem.decode())
    text = canonical(body.model_dump()).decode()
    return {"body": text, "signature": base64.b64encode(sign(private_key_pem, text.encode())).decode(),
            "certificate": certificate_pem.decode()}


def parse_task(envelope: Any) -> tuple[str, TaskBody]:
    """The id and body of a signed task envelope, checking its form only (not the signature)."""
    if not isinstance(envelope, dict) or not all(isinstance(envelope.get(key), str)
                                                 for key in ("body", "signature", "certificate")):
        raise MalformedMessage("the task carries no signed envelope from its requester")
    text = envelope["body"]
    if len(text) > MAX_TASK_BYTES:
        raise MalformedMessage("the task is too large")
    try:
        raw = json.loads(text)
        body = TaskBody.model_validate(raw)
    except (ValueError, ValidationError):
        raise MalformedMessage("the task's signed content is not a valid task") from None
    if canonical(raw).decode() != text:
        raise MalformedMessage("the task's signed content is not in canonical form")
    return task_id_of(text), body


def open_task(federation: Any, envelope: Any, *, now: float | None = None, fresh: bool = True) -> tuple[str, TaskBody]:
    """Check a signed task as a station must before acting on it; returns its id and body. With `fresh`
    (the default) a task that has expired, or claims to be created in the future, is refused too."""
    task_id, body = parse_task(envelope)
    certificate = verified_certificate(federation, envelope["certificate"], body.requester,
                                       what=f"task {task_id}")
    try:
        signature = base64.b64decode(envelope["signature"], validate=True)
    except ValueError:
        raise MalformedMessage(f"task {task_id} carries an unreadable signature") from None
    check_signature(certificate, envelope["body"].encode(), signature, what=f"task {task_id}")
    if body.sealing_certificate:
        verified_certificate(federation, body.sealing_certificate, body.requester, what=f"task {task_id}",
                             sealing=True)
    moment = time.time() if now is None else now
    if not fresh:
        return task_id, body
    if body.created > moment + CLOCK_SKEW:
        raise MalformedMessage(f"task {task_id} claims to be created in the future")
    if moment > body.expires:
        raise MalformedMessage(f"task {task_id} expired before it arrived")
    return task_id, body


# -- results ----------------------------------------------------------------------------------------------------

RESULT_MAGIC = b"PRR1"
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class Result:
    """A result as its recipient opened and verified it."""

    name: str
    sender: str
    payload: bytes


def pack_result(private_key_pem: bytes, *, task: str, sender: str, recipient: str, name: str,
                payload: bytes) -> bytes:
    """Header, signature and payload in one byte string, to be sealed to the recipient."""
    header = canonical({"task": task, "sender": sender, "recipient": recipient, "name": name,
                        "sha256": hashlib.sha256(payload).hexdigest()})
    signature = sign(private_key_pem, header)
    return RESULT_MAGIC + _LENGTH.pack(len(header)) + header + _LENGTH.pack(len(signature)) + signature + payload


def open_result(federation: Any, data: bytes, *, task: str, recipient: str, name: str, sender: str,
                certificate_pem: bytes) -> Result:
    """Check an unsealed result: the header names this task, recipient, name and sender, the payload matches
    its digest, and `sender`'s certificate (`certificate_pem`, checked against the CA) signed the header."""
    what = f"the result {name!r} from {sender}"
    try:
        if not data.startswith(RESULT_MAGIC):
            raise ValueError
        offset = len(RESULT_MAGIC)
        (length,) = _LENGTH.unpack_from(data, offset)
        header_bytes = data[offset + 4: offset + 4 + length]
        offset += 4 + length
        (signature_length,) = _LENGTH.unpack_from(data, offset)
        signature = data[offset + 4: offset + 4 + signature_length]
        payload = data[offset + 4 + signature_length:]
        header = json.loads(header_bytes)
    except (ValueError, struct.error):
        raise MalformedMessage(f"{what} is not a signed prana result") from None
    expected = {"task": task, "sender": sender, "recipient": recipient, "name": name,
                "sha256": hashlib.sha256(payload).hexdigest()}
    if header != expected:
        raise MalformedMessage(f"{what} was signed for another task, sender, recipient or name, or altered")
    certificate = verified_certificate(federation, certificate_pem, sender, what=what)
    check_signature(certificate, header_bytes, signature, what=what)
    return Result(name, sender, payload)
