"""`SwarmBook`: bittorrent-tracker's WebSocket semantics, Shoal's limits, and invariants."""

import dataclasses
import random
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from core.config import TrackerConfig
from core.p2p.locality import UNKNOWN, Location
from core.p2p.swarm import (
    MAX_OFFERS,
    Announced,
    Answered,
    Command,
    ConnectionClosed,
    ConnectionOpened,
    ForgetPeer,
    Forward,
    Forwarded,
    RecordPeer,
    Refused,
    Reject,
    RemotePeer,
    Send,
    SwarmBook,
    Ticked,
    client_of,
    decode_message,
)

IH = "i/a4IGfs0WPVgc3Sn/iT"  # the captured info_hash (p2p.md 1a)
IH2 = "x/a4IGfs0WPVgc3Sn/iT"
OFFER_ID = "".join(chr(c) for c in range(0xE0, 0xF4))  # a latin-1 "binary string"
SDP = {"type": "offer", "sdp": "v=0\r\n"}
ANSWER = {"type": "answer", "sdp": "v=0\r\n"}
UNLIMITED = TrackerConfig(ip_rate=0.0, swarm_rate=0.0)


def pid(n: int) -> str:
    return f"-PM0203-{n:012d}"


def announce(peer: int, *, offers: int = 0, info_hash: str = IH, **extra: Any) -> dict[str, Any]:
    message = {
        "action": "announce",
        "info_hash": info_hash,
        "peer_id": pid(peer),
        "numwant": 5,
        "uploaded": 0,
        "downloaded": 0,
        "offers": [{"offer": SDP, "offer_id": f"{OFFER_ID[:-2]}{i:02d}"} for i in range(offers)],
    }
    return {**message, **extra}


class Harness:
    """A book with connections; `feed` decodes a message for a connection as the shell does."""

    def __init__(self, config: TrackerConfig = UNLIMITED, seed: int = 1) -> None:
        self.book = SwarmBook(config, random.Random(seed))
        self.now = 0.0

    def open(self, conn: int, ip: str = "192.0.2.1", location: Location = UNKNOWN) -> None:
        assert self.book.handle(ConnectionOpened(conn, ip, location)) == []

    def feed(self, conn: int, message: object) -> list[Command]:
        return self.book.handle(decode_message(conn, message, self.now))

    def sends(self, conn: int, message: object) -> list[Send]:
        return [c for c in self.feed(conn, message) if isinstance(c, Send)]


def test_announce_reply_and_offers_to_other_peers_only() -> None:
    h = Harness()
    for conn in (1, 2, 3):
        h.open(conn)
    assert h.sends(1, announce(1, event="started"))[0].message == {
        "action": "announce",
        "interval": 120,
        "info_hash": IH,
        "complete": 0,
        "incomplete": 1,
    }
    h.feed(2, announce(2, event="started"))
    sends = h.sends(3, announce(3, offers=5, event="started"))
    reply, relays = sends[0], sends[1:]
    assert reply.conn == 3 and reply.message["incomplete"] == 3
    # Two others, five offers: one offer each, different peers, never the sender.
    assert sorted(s.conn for s in relays) == [1, 2]
    for relay in relays:
        assert relay.message == {
            "action": "announce",
            "offer": SDP,
            "offer_id": relay.message["offer_id"],
            "peer_id": pid(3),
            "info_hash": IH,
        }
        assert relay.message["offer_id"].startswith(OFFER_ID[:-2])
    assert h.book.counters.offers_relayed == 2


def test_at_most_82_offers_are_relayed() -> None:
    h = Harness(TrackerConfig(ip_rate=0.0, swarm_rate=0.0, max_swarms_per_connection=1))
    for conn in range(100):
        h.open(conn)
        h.feed(conn, announce(conn))
    h.open(1000)
    relays = h.sends(1000, announce(1000, offers=90))[1:]
    assert len(relays) == MAX_OFFERS == len({s.conn for s in relays})


def test_answer_is_routed_without_reply_and_unknown_target_dropped() -> None:
    h = Harness()
    h.open(1)
    h.open(2)
    h.feed(1, announce(1))
    h.feed(2, announce(2, offers=1))
    answer = {
        "action": "announce",
        "info_hash": IH,
        "peer_id": pid(1),
        "to_peer_id": pid(2),
        "answer": ANSWER,
        "offer_id": OFFER_ID,
    }
    assert h.sends(1, answer) == [
        Send(
            2,
            {
                "action": "announce",
                "answer": ANSWER,
                "offer_id": OFFER_ID,
                "peer_id": pid(1),
                "info_hash": IH,
            },
        )
    ]
    assert h.sends(1, {**answer, "to_peer_id": pid(9)}) == []
    assert (h.book.counters.answers_relayed, h.book.counters.answers_dropped) == (1, 1)


def test_stopped_and_close_remove_peers_and_empty_swarms() -> None:
    h = Harness()
    h.open(1)
    h.open(2)
    h.feed(1, announce(1))
    h.feed(1, announce(1, info_hash=IH2))
    h.feed(2, announce(2))
    assert h.book.swarms_of(1) == {IH: pid(1), IH2: pid(1)}
    stopped = h.feed(2, announce(2, event="stopped"))
    assert ForgetPeer(IH, pid(2)) in stopped
    assert h.book.members(IH) == {pid(1): 1}
    closed = h.book.handle(ConnectionClosed(1))
    assert set(closed) == {ForgetPeer(IH, pid(1)), ForgetPeer(IH2, pid(1))}
    assert (h.book.peer_count, h.book.swarm_count) == (0, 0)


def test_completed_makes_a_seeder() -> None:
    h = Harness()
    h.open(1)
    h.feed(1, announce(1))
    reply = h.sends(1, announce(1, event="completed"))[0].message
    assert (reply["complete"], reply["incomplete"]) == (1, 0)
    scrape = h.sends(1, {"action": "scrape", "info_hash": [IH, IH2]})[0].message
    assert scrape["files"][IH] == {"complete": 1, "incomplete": 0, "downloaded": 1}
    assert scrape["files"][IH2] == {"complete": 0, "incomplete": 0, "downloaded": 0}


BAD = [
    ("not a dict", Reject.BAD_JSON, None),
    ({**announce(1), "action": "dance"}, Reject.BAD_ACTION, IH),
    ({**announce(1), "info_hash": "short"}, Reject.BAD_INFO_HASH, "short"),
    ({**announce(1), "info_hash": 12}, Reject.BAD_INFO_HASH, None),
    ({**announce(1), "peer_id": "x" * 21}, Reject.BAD_PEER_ID, IH),
    ({**announce(1), "answer": ANSWER, "offer_id": OFFER_ID}, Reject.BAD_TO_PEER_ID, IH),
    ({**announce(1), "answer": SDP, "to_peer_id": pid(2), "offer_id": "x"}, Reject.BAD_ANSWER, IH),
    ({**announce(1), "offers": [{"offer": ANSWER, "offer_id": "x"}]}, Reject.BAD_OFFERS, IH),
    ({**announce(1), "offers": "many"}, Reject.BAD_OFFERS, IH),
    ({**announce(1), "event": "paused"}, Reject.BAD_EVENT, IH),
    ({**announce(1), "event": ["x"]}, Reject.BAD_EVENT, IH),
    ({"action": "scrape"}, Reject.BAD_INFO_HASH, None),
]


@pytest.mark.parametrize(("message", "reason", "info_hash"), BAD)
def test_bad_input_gets_a_failure_reason_and_changes_nothing(
    message: object, reason: Reject, info_hash: str | None
) -> None:
    h = Harness()
    h.open(1)
    h.open(2)
    h.feed(2, announce(2))
    before = (h.book.stats(), h.book.members(IH), h.book.swarms_of(1))
    [send] = h.feed(1, message)
    assert isinstance(send, Send) and send.conn == 1
    assert send.message["failure reason"] == reason.value
    assert send.message.get("info_hash") == info_hash
    assert (h.book.stats(), h.book.members(IH), h.book.swarms_of(1)) == before
    assert h.book.counters.rejects[reason] == 1


def test_swarm_cap_refuses_newcomers_only() -> None:
    h = Harness(TrackerConfig(ip_rate=0.0, swarm_rate=0.0, max_swarm_peers=2))
    for conn in (1, 2, 3):
        h.open(conn)
    h.feed(1, announce(1))
    h.feed(2, announce(2))
    [refusal] = h.sends(3, announce(3, offers=1))
    assert refusal.message == {
        "failure reason": "swarm full",
        "info_hash": IH,
        "action": "announce",
    }
    # Members keep announcing and relaying.
    assert [s.conn for s in h.sends(1, announce(1, offers=1))] == [1, 2]


def test_swarms_per_connection_are_capped() -> None:
    h = Harness(TrackerConfig(ip_rate=0.0, swarm_rate=0.0, max_swarms_per_connection=1))
    h.open(1)
    h.feed(1, announce(1))
    [refusal] = h.sends(1, announce(1, info_hash=IH2))
    assert refusal.message["failure reason"] == Reject.TOO_MANY_SWARMS.value


def test_per_ip_and_per_swarm_rate_limits() -> None:
    h = Harness(TrackerConfig(ip_rate=1.0, ip_burst=2, swarm_rate=0.0))
    h.open(1, ip="192.0.2.1")
    h.open(2, ip="192.0.2.1")  # same address, another connection: same bucket
    h.open(3, ip="192.0.2.9")
    assert "failure reason" not in h.sends(1, announce(1))[0].message
    assert "failure reason" not in h.sends(2, announce(2))[0].message
    assert h.sends(1, announce(1))[0].message["failure reason"] == "rate limited"
    assert "failure reason" not in h.sends(3, announce(3))[0].message
    h.now += 1.0
    assert "failure reason" not in h.sends(1, announce(1))[0].message

    h = Harness(TrackerConfig(ip_rate=0.0, swarm_rate=1.0, swarm_burst=1))
    h.open(1)
    h.open(2)
    h.feed(1, announce(1))
    assert h.sends(2, announce(2))[0].message["failure reason"] == "rate limited"
    assert "failure reason" not in h.sends(2, announce(2, info_hash=IH2))[0].message


def test_silent_peers_expire_after_two_intervals() -> None:
    h = Harness(TrackerConfig(ip_rate=0.0, swarm_rate=0.0, announce_interval=10))
    h.open(1)
    h.open(2)
    h.feed(1, announce(1))
    h.now = 15.0
    h.feed(2, announce(2))
    assert h.book.next_deadline() == 20.0
    assert h.book.handle(Ticked(19.9)) == []
    assert h.book.handle(Ticked(20.0)) == [ForgetPeer(IH, pid(1))]
    assert h.book.members(IH) == {pid(2): 2}
    assert h.book.next_deadline() == 35.0
    assert h.book.counters.peers_expired == 1


def test_peer_id_taken_from_another_address_is_refused_same_address_takes_over() -> None:
    h = Harness()
    h.open(1, ip="192.0.2.1")
    h.open(2, ip="192.0.2.2")
    h.open(3, ip="192.0.2.1")
    h.feed(1, announce(1))
    [refusal] = h.sends(2, announce(1))
    assert refusal.message["failure reason"] == Reject.PEER_ID_IN_USE.value
    h.feed(3, announce(1))  # a reconnecting player from the same address
    assert h.book.members(IH) == {pid(1): 3}
    assert h.book.swarms_of(1) == {}


def test_offers_go_to_the_same_pop_first() -> None:
    h = Harness()
    near, far = Location(pop="par1"), Location(pop="ams1", country="NL")
    h.open(1, location=near)
    for conn in range(2, 12):
        h.open(conn, location=far)
        h.feed(conn, announce(conn))
    h.feed(1, announce(1))
    h.open(99, location=near)
    relays = h.sends(99, announce(99, offers=1))[1:]
    assert [s.conn for s in relays] == [1]


def test_remote_peers_are_offered_forwarded_and_answered_back() -> None:
    h = Harness()
    h.open(1)
    remote = RemotePeer(pid(50), "proc-b", Location(), seeder=True)
    event = decode_message(1, announce(1, offers=2), 0.0)
    assert isinstance(event, Announced)
    commands = h.book.handle(dataclasses.replace(event, remote=(remote,)))
    reply = commands[1]
    assert isinstance(reply, Send) and (reply.message["complete"], reply.message["incomplete"]) == (
        1,
        1,
    )
    forward = commands[-1]
    assert isinstance(forward, Forward) and (forward.process, forward.to_peer_id) == (
        "proc-b",
        pid(50),
    )
    assert RecordPeer(IH, pid(1), Location(), False) in commands
    # proc-b's peer answers: proc-b's book learned the route from the forwarded offer.
    other = Harness()
    other.open(7)
    other.feed(7, announce(50))
    delivered = other.book.handle(Forwarded("proc-a", IH, pid(50), forward.message, 0.0))
    assert delivered == [Send(7, forward.message)]
    answer = {**announce(50), "to_peer_id": pid(1), "answer": ANSWER, "offer_id": OFFER_ID}
    back = [c for c in other.feed(7, answer) if isinstance(c, Forward)]
    assert [(c.process, c.to_peer_id, c.message["answer"]) for c in back] == [
        ("proc-a", pid(1), ANSWER)
    ]
    # A relay for a peer that left is dropped.
    assert other.book.handle(Forwarded("proc-a", IH, pid(51), forward.message, 0.0)) == []
    assert other.book.counters.forwards_dropped == 1


def test_stats_fields_and_clients() -> None:
    h = Harness()
    h.open(1, ip="192.0.2.1")
    h.open(2, ip="2001:db8::1")
    h.feed(1, announce(1))
    h.feed(1, announce(1, info_hash=IH2, event="completed"))
    h.feed(2, {**announce(2), "peer_id": "-WW0102-abcdefghijkl"})
    assert h.book.stats() == {
        "torrents": 2,
        "activeTorrents": 2,
        "peersAll": 2,
        "peersSeederOnly": 0,
        "peersLeecherOnly": 1,
        "peersSeederAndLeecher": 1,
        "peersIPv4": 1,
        "peersIPv6": 1,
        "clients": {"p2p-media-loader": {"2.3": 1}, "webtorrent": {"0102": 1}},
    }
    assert client_of("no-prefix-at-all-xxx") == ("unknown", "")


# Invariants under any sequence of events ----------------------------------------------------

HASHES = [IH, IH2, "z/a4IGfs0WPVgc3Sn/iT"]


class BookMachine(RuleBasedStateMachine):
    """Random connections, announces, answers, garbage, closes and time; invariants hold."""

    def __init__(self) -> None:
        super().__init__()
        config = TrackerConfig(
            ip_rate=5.0, ip_burst=5, swarm_rate=20.0, swarm_burst=10, max_swarm_peers=4,
            max_swarms_per_connection=2, announce_interval=10,
        )  # fmt: skip
        self.book = SwarmBook(config, random.Random(0))
        self.open: dict[int, str] = {}
        self.closed: set[int] = set()
        self.next_conn = 1
        self.now = 0.0

    def _check(self, conn: int, commands: list[Command], sender: str | None) -> None:
        for command in commands:
            if isinstance(command, Send):
                assert command.conn in self.open, "sent to a closed connection"
                if "offer" in command.message:
                    assert command.conn != conn and command.message["peer_id"] == sender

    @rule(ip=st.sampled_from(["192.0.2.1", "192.0.2.2", "2001:db8::1"]))
    def connect(self, ip: str) -> None:
        conn = self.next_conn
        self.next_conn += 1
        self.book.handle(ConnectionOpened(conn, ip, Location(pop=ip[-1])))
        self.open[conn] = ip

    @precondition(lambda self: bool(self.open))
    @rule(
        data=st.data(),
        peer=st.integers(0, 6),
        info_hash=st.sampled_from(HASHES),
        event=st.sampled_from([None, "started", "completed", "stopped"]),
        offers=st.integers(0, 6),
    )
    def announce(
        self, data: st.DataObject, peer: int, info_hash: str, event: str | None, offers: int
    ) -> None:
        conn = data.draw(st.sampled_from(sorted(self.open)))
        message = announce(peer, offers=offers, info_hash=info_hash, event=event)
        self._check(conn, self.book.handle(decode_message(conn, message, self.now)), pid(peer))

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data(), peer=st.integers(0, 6), to=st.integers(0, 6))
    def answer(self, data: st.DataObject, peer: int, to: int) -> None:
        conn = data.draw(st.sampled_from(sorted(self.open)))
        message = {**announce(peer), "to_peer_id": pid(to), "answer": ANSWER, "offer_id": "o"}
        event = decode_message(conn, message, self.now)
        assert isinstance(event, Answered)
        commands = self.book.handle(event)
        self._check(conn, commands, None)
        assert not any(isinstance(c, Send) and c.conn == conn for c in commands) or any(
            isinstance(c, Send) and "failure reason" in c.message for c in commands
        )

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data(), garbage=st.sampled_from(BAD))
    def garbage(self, data: st.DataObject, garbage: tuple[object, Reject, str | None]) -> None:
        conn = data.draw(st.sampled_from(sorted(self.open)))
        before = self.book.stats()
        commands = self.book.handle(decode_message(conn, garbage[0], self.now))
        assert self.book.stats() == before
        assert len(commands) == 1 and isinstance(commands[0], Send)

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data())
    def close(self, data: st.DataObject) -> None:
        conn = data.draw(st.sampled_from(sorted(self.open)))
        del self.open[conn]
        self.closed.add(conn)
        self.book.handle(ConnectionClosed(conn))

    @rule(seconds=st.floats(0.0, 15.0))
    def wait(self, seconds: float) -> None:
        self.now += seconds
        self.book.handle(Ticked(self.now))

    @rule()
    def refused_by_shell(self) -> None:
        if self.open:
            conn = min(self.open)
            self.book.handle(Refused(conn, Reject.NOT_ALLOWED, IH, "announce"))

    @invariant()
    def no_closed_connection_is_in_a_swarm(self) -> None:
        for info_hash in self.book.info_hashes():
            members = self.book.members(info_hash)
            assert members, "an empty swarm is kept"
            assert all(conn in self.open for conn in members.values())
            assert len(members) <= 4
        for conn in self.closed:
            assert self.book.swarms_of(conn) == {}

    @invariant()
    def stats_count_the_book(self) -> None:
        stats = self.book.stats()
        memberships = {
            (ih, peer_id): conn
            for ih in self.book.info_hashes()
            for peer_id, conn in self.book.members(ih).items()
        }
        assert self.book.peer_count == len(memberships)
        assert stats["torrents"] == self.book.swarm_count == len(self.book.info_hashes())
        assert stats["peersAll"] == len({peer_id for _, peer_id in memberships})
        assert stats["peersAll"] == (
            stats["peersSeederOnly"] + stats["peersLeecherOnly"] + stats["peersSeederAndLeecher"]
        )
        assert stats["peersAll"] == stats["peersIPv4"] + stats["peersIPv6"]
        for conn in self.open:
            joined = self.book.swarms_of(conn)
            assert len(joined) <= 2
            assert all(memberships[(ih, peer_id)] == conn for ih, peer_id in joined.items())

    @invariant()
    def nothing_outlives_its_timeout(self) -> None:
        deadline = self.book.next_deadline()
        assert deadline is None or deadline > self.now - 20.0


TestBookMachine = BookMachine.TestCase
TestBookMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
