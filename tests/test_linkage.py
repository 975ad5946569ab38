"""Private record linkage: the id checks, the plaintext oracle, and the PSI across 2 and 3 real processes
(spu's PSI over mutual-TLS brpc links), including bad input, a misbehaving peer and a peer that dies."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linkage_targets import population
from prana.analyses.linkage import check_ids, plaintext_link
from prana.engine.local import error_for
from prana.errors import InputValidationError, PeerAborted


# -- checks and oracle (plain) ------------------------------------------------------------------------------

def test_check_ids_gives_stripped_text():
    assert check_ids([" 012345678", 12345678, "abc "], "a.csv") == ["012345678", "12345678", "abc"]


@pytest.mark.parametrize("blank", ["", "   ", "NaN", "null", None, float("nan")])
def test_a_blank_id_names_its_row(blank):
    with pytest.raises(InputValidationError, match=r"^row 3 of a\.csv has no id"):
        check_ids(["1", "2", blank, "4"], "a.csv")


def test_a_repeated_id_names_both_rows_and_not_the_id():
    ids = ["111222333", "222333444", "333444555", "222333444 "]
    with pytest.raises(InputValidationError) as caught:
        check_ids(ids, "b.csv")
    assert str(caught.value) == ("rows 2 and 4 of b.csv have the same id; an id column must identify each person "
                                 "once")
    assert "222333444" not in str(caught.value)


@given(st.lists(st.text("abcdefghij0123456789 ", min_size=1, max_size=12).map(str.strip).filter(bool),
                min_size=2, max_size=50, unique=True), st.data())
def test_a_repeated_id_is_found_wherever_it_is(ids, data):
    copied, copy = data.draw(st.lists(st.integers(0, len(ids) - 1), min_size=2, max_size=2, unique=True))
    assert check_ids(ids, "d.csv") == ids
    ids[copy] = f" {ids[copied]}"
    low, high = sorted((copied, copy))
    with pytest.raises(InputValidationError, match=rf"^rows {low + 1} and {high + 1} of d\.csv have the same id"):
        check_ids(ids, "d.csv")


def test_an_empty_id_column_is_refused():
    with pytest.raises(InputValidationError, match="has no rows"):
        check_ids([], "c.csv")


@given(st.lists(st.sets(st.integers(0, 60), min_size=1, max_size=40), min_size=2, max_size=3), st.randoms())
def test_the_oracle_gives_each_party_the_common_persons_in_one_order(sets, random):
    lists = []
    for held in sets:
        ids = [f"{value:03d}" for value in held]
        random.shuffle(ids)
        lists.append(ids)
    rows = plaintext_link(lists)
    common = sorted(set.intersection(*[set(ids) for ids in lists]))
    for ids, mine in zip(lists, rows):
        assert [ids[row] for row in mine] == common


# -- across real processes ------------------------------------------------------------------------------------

def _spawn(committee, federation, workdir, parties, session, per_party):
    for party in parties:
        committee.spawn(party, "linkage_targets:member",
                        dict(federation=federation, me=party, committee=parties, session=session,
                             workdir=str(workdir / party), **per_party(party)))


@pytest.mark.slow
def test_three_parties_link_exactly_the_common_persons_in_one_order(committee, federation_factory, tmp_path):
    parties = ["a", "b", "c"]
    lists = population(4000, [0.9, 0.75, 0.85], seed=11)
    lists[1] = [f" {value} " if index % 7 == 0 else value for index, value in enumerate(lists[1])]  # padded cells
    _spawn(committee, str(federation_factory(parties)), tmp_path, parties, "link3",
           lambda party: {"ids": lists[parties.index(party)]})
    results = committee.wait(60)
    expected = plaintext_link(lists)
    common = sorted(set.intersection(*[{value.strip() for value in ids} for ids in lists]))
    assert 1500 < len(common) < 2500
    for index, party in enumerate(parties):
        assert "error" not in results[party], results[party]
        assert results[party]["ids"] == common                   # exactly the intersection, in one order
        assert results[party]["rows"] == expected[index].tolist()
        assert results[party]["workdir_left"] == []              # the PSI files (they hold ids) are gone


@pytest.mark.slow
@pytest.mark.parametrize("protocol", [None, "ecdh"])
def test_two_parties_link_too(committee, federation_factory, tmp_path, protocol):
    parties = ["a", "b"]
    lists = population(3000, [0.8, 0.9], seed=5)
    _spawn(committee, str(federation_factory(parties)), tmp_path, parties, "link2",
           lambda party: {"ids": lists[parties.index(party)], "protocol": protocol})
    results = committee.wait(60)
    expected = plaintext_link(lists)
    for index, party in enumerate(parties):
        assert "error" not in results[party], results[party]
        assert results[party]["rows"] == expected[index].tolist()
        assert results[party]["workdir_left"] == []
    assert results["a"]["ids"] == results["b"]["ids"] and len(results["a"]["ids"]) > 1800


@pytest.mark.slow
def test_a_repeated_id_stops_its_party_before_the_psi_and_the_others_cleanly(committee, federation_factory,
                                                                              tmp_path):
    parties = ["a", "b", "c"]
    lists = population(500, [0.9, 0.9, 0.9], seed=2)
    lists[1][40] = lists[1][7]
    started = time.monotonic()
    _spawn(committee, str(federation_factory(parties)), tmp_path, parties, "dup",
           lambda party: {"ids": lists[parties.index(party)]})
    results = committee.wait(60)
    assert time.monotonic() - started < 40
    assert results["b"]["type"] == "InputValidationError"
    assert results["b"]["error"] == ("rows 8 and 41 of b.csv have the same id; an id column must identify each "
                                     "person once")
    for party in "ac":
        assert results[party]["type"] == "PeerAborted", results[party]
        assert results[party]["error"].startswith("b aborted")


@pytest.mark.slow
@pytest.mark.parametrize("parties", [["a", "b", "c"], ["a", "b"]])
def test_no_common_person_is_a_clear_error_at_every_party(committee, federation_factory, tmp_path, parties):
    everyone = population(300 * len(parties), [1.0], seed=3)[0]
    _spawn(committee, str(federation_factory(parties)), tmp_path, parties, "empty",
           lambda party: {"ids": everyone[300 * parties.index(party): 300 * (parties.index(party) + 1)]})
    results = committee.wait(60)
    for party in parties:
        assert results[party]["type"] == "InputValidationError", results[party]
        assert results[party]["error"].startswith("the parties have no person in common")


@pytest.mark.slow
def test_members_that_disagree_on_the_protocol_both_stop(committee, federation_factory, tmp_path):
    parties = ["a", "b"]
    lists = population(200, [0.9, 0.9], seed=4)
    _spawn(committee, str(federation_factory(parties)), tmp_path, parties, "proto",
           lambda party: {"ids": lists[parties.index(party)], "protocol": {"a": "rr22", "b": "ecdh"}[party]})
    results = committee.wait(60)
    for party in parties:
        assert results[party]["type"] in ("ProtocolError", "PeerAborted"), results[party]
        assert "disagree on the linkage protocol" in results[party]["error"]


@pytest.mark.slow
def test_a_malformed_engine_address_is_refused(committee, federation_factory, tmp_path):
    federation = str(federation_factory(["a", "b"]))
    lists = population(200, [0.9], seed=6)
    committee.spawn("a", "linkage_targets:member", dict(federation=federation, me="a", committee=["a", "b"],
                                                         session="bad", workdir=str(tmp_path / "a"), ids=lists[0]))
    committee.spawn("b", "linkage_targets:bad_engine_member", dict(federation=federation, me="b",
                                                                   committee=["a", "b"], session="bad"))
    results = committee.wait(60)
    assert results["a"]["type"] == "MalformedMessage"
    assert results["a"]["error"] == "b announced an invalid engine address"
    assert results["b"]["type"] == "PeerAborted"


@pytest.mark.slow
def test_a_member_that_dies_during_the_psi_stops_the_others_at_once(committee, federation_factory, tmp_path):
    """ECDH-3PC waits up to 30 minutes for a silent peer; the peer watchdog must end it in seconds."""
    parties = ["a", "b", "c"]
    generate = dict(persons=110_000, keep=[0.9, 0.9, 0.9], seed=8)
    _spawn(committee, str(federation_factory(parties)), tmp_path, parties, "dies",
           lambda party: {"generate": generate, "return_ids": False, "die_during_psi": 1.0 if party == "c" else 0})
    started = time.monotonic()
    results = committee.wait(60)
    assert time.monotonic() - started < 45
    assert results["c"]["returncode"] == 9
    for party in "ab":
        assert isinstance(error_for(party, results[party]), PeerAborted), results[party]
