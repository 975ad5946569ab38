"""The explicit, versioned byte format of everything that crosses a process boundary.

Nothing that a peer sends is ever unpickled. A frame is

    offset  size  field
    0       4     magic  b"PRNA"
    4       1     format version (1)
    5       1     kind (see `Kind`)
    6       4     header length H, big-endian
    10      H     header: UTF-8 JSON object; for every kind it holds "session" and "step"
    10+H    ...   blobs, each as 8-byte big-endian length + bytes; the header's "blobs" says how many

Kinds:

- HELLO, CONTROL, ABORT: the header is the message; no blobs.
- SHARE: one party's share of one secret value. Blob 0 is the `libspu.ValueMeta` proto, blobs 1.. are
  the share chunks. The header names the variable, its dtype and shape.
- ARRAY: a plain numpy array (a revealed output, a public table). Blob 0 is the raw little-endian data;
  the header carries dtype and shape. Only numeric dtypes are accepted.
- EXECUTABLE: a serialised `libspu.Executable` in blob 0, with its SHA-256 in the header.
- MODEL: a learner's state (`prana.analyses.learning.state`): the header names the learner, its
  hyperparameters, counters and arrays; blobs 0.. are the arrays' raw float64 values.
- BID: one server's part of an auction bid's replicated shares (`prana.analyses.auction.shares`): the header
  names the auction, bidder, bid sequence, server, shape and ring; blobs 0 and 1 are the server's two
  components, each a 32-byte seed or the raw little-endian values.

Every decode checks the magic, version, kind, lengths and the header's required fields, and raises
`MalformedMessage` with one sentence on any mismatch.
"""

from __future__ import annotations

import enum
import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prana.errors import MalformedMessage

MAGIC = b"PRNA"
FORMAT_VERSION = 1
MAX_HEADER = 16 * 1024 * 1024
_PREFIX = struct.Struct(">4sBBI")
_BLOB_LENGTH = struct.Struct(">Q")
ARRAY_DTYPES = {"bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                "float32", "float64"}


class Kind(enum.IntEnum):
    HELLO = 1
    CONTROL = 2
    ABORT = 3
    SHARE = 4
    ARRAY = 5
    EXECUTABLE = 6
    MODEL = 7
    BID = 8


@dataclass
class Frame:
    """One decoded message: its kind, its JSON header and its binary blobs."""

    kind: Kind
    header: dict[str, Any]
    blobs: list[bytes] = field(default_factory=list)

    @property
    def session(self) -> str:
        return str(self.header.get("session", ""))

    @property
    def step(self) -> str:
        return str(self.header.get("step", ""))


def encode(frame: Frame) -> bytes:
    """Serialise a frame. The header is JSON, so it can hold only plain data."""
    header = dict(frame.header)
    header["blobs"] = len(frame.blobs)
    raw = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
    parts = [_PREFIX.pack(MAGIC, FORMAT_VERSION, int(frame.kind), len(raw)), raw]
    for blob in frame.blobs:
        parts.append(_BLOB_LENGTH.pack(len(blob)))
        parts.append(bytes(blob))
    return b"".join(parts)


def decode(data: bytes, *, peer: str | None = None) -> Frame:
    """Parse a frame, checking every length. Raises MalformedMessage naming the peer."""
    view = memoryview(data)
    if len(view) < _PREFIX.size:
        raise MalformedMessage(f"a message from {peer or 'a peer'} is too short to be a prana frame",
                               peer=peer)
    magic, version, kind, header_length = _PREFIX.unpack_from(view, 0)
    if magic != MAGIC:
        raise MalformedMessage(f"a message from {peer or 'a peer'} is not a prana frame (bad magic)",
                               peer=peer)
    if version != FORMAT_VERSION:
        raise MalformedMessage(f"{peer or 'a peer'} speaks frame format {version}; this prana speaks "
                               f"{FORMAT_VERSION}", peer=peer)
    try:
        kind = Kind(kind)
    except ValueError:
        raise MalformedMessage(f"a message from {peer or 'a peer'} has unknown kind {kind}",
                               peer=peer) from None
    offset = _PREFIX.size
    if header_length > MAX_HEADER or offset + header_length > len(view):
        raise MalformedMessage(f"a message from {peer or 'a peer'} declares a header longer than itself",
                               peer=peer)
    try:
        header = json.loads(bytes(view[offset:offset + header_length]).decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MalformedMessage(f"a message from {peer or 'a peer'} has a header that is not JSON",
                               peer=peer) from None
    if not isinstance(header, dict) or not isinstance(header.get("blobs"), int):
        raise MalformedMessage(f"a message from {peer or 'a peer'} has a header without a blob count",
                               peer=peer)
    offset += header_length
    blobs: list[bytes] = []
    for _ in range(header["blobs"]):
        if offset + _BLOB_LENGTH.size > len(view):
            raise MalformedMessage(f"a message from {peer or 'a peer'} ends inside a blob length",
                                   peer=peer)
        (length,) = _BLOB_LENGTH.unpack_from(view, offset)
        offset += _BLOB_LENGTH.size
        if offset + length > len(view):
            raise MalformedMessage(f"a message from {peer or 'a peer'} ends inside a blob", peer=peer)
        blobs.append(bytes(view[offset:offset + length]))
        offset += length
    if offset != len(view):
        raise MalformedMessage(f"a message from {peer or 'a peer'} has {len(view) - offset} trailing bytes",
                               peer=peer)
    header.pop("blobs")
    return Frame(kind, header, blobs)


def require(header: dict[str, Any], name: str, kind: type | tuple[type, ...], *, peer: str | None = None,
            step: str | None = None) -> Any:
    """Fetch a required header field of the given type, or raise MalformedMessage."""
    value = header.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise MalformedMessage(f"a message from {peer or 'a peer'} lacks a valid {name!r} field",
                               peer=peer, step=step)
    return value


# -- arrays -------------------------------------------------------------------------------------------------

def array_frame(session: str, step: str, name: str, array: np.ndarray) -> Frame:
    array = np.asarray(array)
    if array.dtype.name not in ARRAY_DTYPES:
        raise TypeError(f"dtype {array.dtype} cannot travel as an ARRAY frame")
    data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return Frame(Kind.ARRAY, {"session": session, "step": step, "name": name,
                              "dtype": array.dtype.name, "shape": list(array.shape)}, [data])


def frame_array(frame: Frame, *, peer: str | None = None) -> np.ndarray:
    """The numpy array in an ARRAY frame, after checking dtype, shape and size."""
    if frame.kind != Kind.ARRAY or len(frame.blobs) != 1:
        raise MalformedMessage(f"expected an array from {peer or 'a peer'}", peer=peer, step=frame.step)
    dtype_name = require(frame.header, "dtype", str, peer=peer, step=frame.step)
    shape = require(frame.header, "shape", list, peer=peer, step=frame.step)
    if dtype_name not in ARRAY_DTYPES or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise MalformedMessage(f"an array from {peer or 'a peer'} has a bad dtype or shape",
                               peer=peer, step=frame.step)
    dtype = np.dtype(dtype_name).newbyteorder("<")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(frame.blobs[0]) != expected:
        raise MalformedMessage(f"an array from {peer or 'a peer'} holds {len(frame.blobs[0])} bytes where "
                               f"its shape needs {expected}", peer=peer, step=frame.step)
    return np.frombuffer(frame.blobs[0], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


# -- SPU shares and executables -----------------------------------------------------------------------------

def share_frame(session: str, step: str, name: str, share: Any, **header: Any) -> Frame:
    """Wrap one `libspu.Share` (meta plus chunks) for transport; `header` adds plain fields."""
    return Frame(Kind.SHARE, {**header, "session": session, "step": step, "name": name},
                 [bytes(share.meta), *(bytes(chunk) for chunk in share.share_chunks)])


def frame_share(frame: Frame, *, expected_name: str, peer: str | None = None) -> Any:
    """Rebuild a `libspu.Share` from a SHARE frame, checking that it is the variable we expect."""
    from spu import libspu

    if frame.kind != Kind.SHARE or len(frame.blobs) < 2:
        raise MalformedMessage(f"expected a share of {expected_name!r} from {peer or 'a peer'}",
                               peer=peer, step=frame.step)
    name = require(frame.header, "name", str, peer=peer, step=frame.step)
    if name != expected_name:
        raise MalformedMessage(f"{peer or 'a peer'} sent a share of {name!r} where {expected_name!r} was due",
                               peer=peer, step=frame.step)
    meta = libspu.ValueMeta()
    try:
        ok = meta.ParseFromString(frame.blobs[0])
    except Exception:  # noqa: BLE001 - protobuf raises several types on garbage
        ok = False
    if not ok:
        raise MalformedMessage(f"the share of {name!r} from {peer or 'a peer'} has an unreadable header",
                               peer=peer, step=frame.step)
    share = libspu.Share()
    share.meta = frame.blobs[0]
    share.share_chunks = frame.blobs[1:]
    return share


def share_meta(share: Any) -> Any:
    from spu import libspu

    meta = libspu.ValueMeta()
    meta.ParseFromString(share.meta)
    return meta


def executable_frame(session: str, step: str, executable: Any) -> Frame:
    data = executable.SerializeToString()
    return Frame(Kind.EXECUTABLE, {"session": session, "step": step,
                                   "sha256": hashlib.sha256(data).hexdigest()}, [data])


def frame_executable(frame: Frame, *, peer: str | None = None) -> Any:
    from spu import libspu

    if frame.kind != Kind.EXECUTABLE or len(frame.blobs) != 1:
        raise MalformedMessage(f"expected an executable from {peer or 'a peer'}", peer=peer, step=frame.step)
    digest = require(frame.header, "sha256", str, peer=peer, step=frame.step)
    if hashlib.sha256(frame.blobs[0]).hexdigest() != digest:
        raise MalformedMessage(f"the executable from {peer or 'a peer'} does not match its digest",
                               peer=peer, step=frame.step)
    executable = libspu.Executable()
    try:
        ok = executable.ParseFromString(frame.blobs[0])
    except Exception:  # noqa: BLE001
        ok = False
    if not ok:
        raise MalformedMessage(f"the executable from {peer or 'a peer'} does not parse", peer=peer,
                               step=frame.step)
    return executable
