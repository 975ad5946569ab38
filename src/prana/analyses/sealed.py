"""Messages sealed from one party of a federation to another, for any carrier (a folder on one machine, the
hub): signed by the sender for this task, recipient and name (`prana.signed.pack_result`), then sealed to the
recipient's sealing certificate (`prana.hub.sealing`). A carrier that reads or swaps them learns nothing and
cannot pass one off as another: the name, task, sender and recipient are all signed and checked on opening.
"""

from __future__ import annotations

from prana.config import Federation
from prana.errors import MalformedMessage


def seal_to(federation: Federation, me: str, recipient: str, task: str, name: str, payload: bytes) -> bytes:
    from prana.hub.sealing import seal
    from prana.signed import pack_result, verified_certificate

    certificate = federation.sealing_certificate_of(recipient).read_bytes()
    verified_certificate(federation, certificate, recipient, what=f"the sealing certificate of {recipient}",
                         sealing=True)
    signed = pack_result(federation.identity(me)[1].read_bytes(), task=task, sender=me, recipient=recipient,
                         name=name, payload=payload)
    return seal(certificate, signed, context=f"{task}/{name}".encode())


def open_from(federation: Federation, me: str, sender: str, task: str, name: str, sealed: bytes) -> bytes:
    from prana.hub.sealing import unseal
    from prana.pki import KeyPair, sealing_pair
    from prana.signed import open_result

    pair = sealing_pair(KeyPair(*federation.identity(me)))
    try:
        data = unseal(pair.private_key.read_bytes(), sealed, context=f"{task}/{name}".encode())
    except MalformedMessage as exc:
        raise MalformedMessage(f"the message {name!r} from {sender} does not open: {exc}", peer=sender) from None
    return open_result(federation, data, task=task, recipient=me, name=name, sender=sender,
                       certificate_pem=federation.certificate_of(sender).read_bytes()).payload
