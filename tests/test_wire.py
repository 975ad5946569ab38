"""The byte format: round trips, and every kind of malformed input gives MalformedMessage."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from prana.engine import wire
from prana.errors import MalformedMessage

headers = st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k != "blobs"),
                          st.one_of(st.integers(-2**40, 2**40), st.text(max_size=20), st.booleans()), max_size=5)


@given(kind=st.sampled_from(list(wire.Kind)), header=headers, blobs=st.lists(st.binary(max_size=64), max_size=4))
def test_frame_round_trip(kind, header, blobs):
    frame = wire.Frame(kind, {**header, "session": "s", "step": "x"}, blobs)
    back = wire.decode(wire.encode(frame))
    assert back.kind == kind and back.blobs == blobs and back.header == frame.header


@given(array=hnp.arrays(dtype=st.sampled_from([np.int32, np.int64, np.uint64, np.float64, np.bool_]),
                        shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=5)))
def test_array_round_trip(array):
    back = wire.frame_array(wire.decode(wire.encode(wire.array_frame("s", "x", "a", array))))
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


@settings(max_examples=300)
@given(data=st.binary(max_size=200))
def test_random_bytes_never_crash_the_decoder(data):
    try:
        wire.decode(data)
    except MalformedMessage:
        pass


@given(cut=st.integers(min_value=0, max_value=60))
def test_truncated_frames_are_refused(cut):
    data = wire.encode(wire.Frame(wire.Kind.CONTROL, {"session": "s", "step": "x", "v": 1}, [b"abcdef"]))
    if cut >= len(data):
        return
    with pytest.raises(MalformedMessage):
        wire.decode(data[:cut])


def test_specific_malformations():
    good = wire.encode(wire.Frame(wire.Kind.CONTROL, {"session": "s", "step": "x"}))
    with pytest.raises(MalformedMessage, match="bad magic"):
        wire.decode(b"XXXX" + good[4:])
    with pytest.raises(MalformedMessage, match="frame format 9"):
        wire.decode(good[:4] + bytes([9]) + good[5:])
    with pytest.raises(MalformedMessage, match="unknown kind"):
        wire.decode(good[:5] + bytes([99]) + good[6:])
    with pytest.raises(MalformedMessage, match="trailing"):
        wire.decode(good + b"\x00")
    frame = wire.array_frame("s", "x", "a", np.arange(4, dtype=np.int32))
    frame.header["shape"] = [5]
    with pytest.raises(MalformedMessage, match="holds 16 bytes"):
        wire.frame_array(wire.decode(wire.encode(frame)))
    frame.header.update(shape=[4], dtype="object")
    with pytest.raises(MalformedMessage, match="bad dtype"):
        wire.frame_array(wire.decode(wire.encode(frame)))


def test_share_and_executable_frames_check_their_contents():
    from spu import libspu

    bogus = wire.Frame(wire.Kind.SHARE, {"session": "s", "step": "x", "name": "v"}, [b"\xff\xfe not a proto", b""])
    with pytest.raises(MalformedMessage):
        wire.frame_share(wire.decode(wire.encode(bogus)), expected_name="v")
    with pytest.raises(MalformedMessage, match="where 'w' was due"):
        wire.frame_share(wire.decode(wire.encode(bogus)), expected_name="w")
    executable = libspu.Executable(name="f", input_names=["a"], output_names=["b"], code=b"module")
    frame = wire.decode(wire.encode(wire.executable_frame("s", "x", executable)))
    assert wire.frame_executable(frame).name == "f"
    frame.blobs[0] = frame.blobs[0][:-1] + b"!"
    with pytest.raises(MalformedMessage, match="digest"):
        wire.frame_executable(frame)
