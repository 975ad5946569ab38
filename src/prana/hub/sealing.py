"""Results sealed to their recipient, so that the hub that stores and forwards them cannot read them.

ECIES on the recipient's *sealing* certificate (EC P-256, key agreement only; `prana.pki.sealing_pair`), never
its TLS certificate: an ephemeral key agrees a secret with the recipient's public key (ECDH), HKDF-SHA256
turns it into an AES-256-GCM key, and the task id and result name are bound in as associated data (a sealed
result cannot be replayed as another task's). What is sealed is already signed by its sender
(`prana.signed.pack_result`).

    sealed = seal(certificate_pem, payload, context=b"task/name")
    payload = unseal(private_key_pem, sealed, context=b"task/name")

Format: b"PRS1" | 65-byte uncompressed ephemeral public point | 12-byte nonce | ciphertext+tag.
"""

from __future__ import annotations

import os

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from prana.errors import ConfigError, MalformedMessage

MAGIC = b"PRS1"
_POINT = 65


def _key(shared: bytes, context: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=MAGIC, info=b"prana sealed result " + context).derive(shared)


def seal(certificate_pem: bytes, payload: bytes, *, context: bytes) -> bytes:
    from prana.pki import is_sealing_certificate

    certificate = x509.load_pem_x509_certificate(certificate_pem)
    if not is_sealing_certificate(certificate):
        raise ConfigError("results are sealed to a sealing certificate (NAME-sealing.pem), not to this one")
    public = certificate.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise ConfigError("the recipient's certificate has no EC key to seal a result to")
    ephemeral = ec.generate_private_key(public.curve)
    point = ephemeral.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint)
    nonce = os.urandom(12)
    ciphertext = AESGCM(_key(ephemeral.exchange(ec.ECDH(), public), context)).encrypt(nonce, payload, context)
    return MAGIC + point + nonce + ciphertext


def unseal(private_key_pem: bytes, sealed: bytes, *, context: bytes) -> bytes:
    if not sealed.startswith(MAGIC) or len(sealed) < len(MAGIC) + _POINT + 12 + 16:
        raise MalformedMessage("a sealed result is not in prana's sealed format")
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError("this private key cannot open sealed results (not an EC key)")
    offset = len(MAGIC)
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(key.curve, sealed[offset: offset + _POINT])
    except ValueError:
        raise MalformedMessage("a sealed result carries an invalid key") from None
    nonce = sealed[offset + _POINT: offset + _POINT + 12]
    try:
        return AESGCM(_key(key.exchange(ec.ECDH(), peer), context)).decrypt(nonce, sealed[offset + _POINT + 12:], context)
    except InvalidTag:
        raise MalformedMessage("a sealed result does not open with this key: it is addressed to someone else, "
                               "belongs to another task, or was altered") from None
