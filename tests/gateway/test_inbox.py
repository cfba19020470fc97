"""The embedded gateway's inbox (gateway/inbox.py) and its replay by EmbeddedHandoff.

A request is answered once its delivery is fsynced into the inbox; the consumer applies the
inbox behind the answers and keeps its position with the state. These tests check the file
format (round trip, rotation, a torn or corrupt tail after a crash), and that a restart replays
exactly from the applied position with every order counted once — also after a crash between
the ledger write and the state write.
"""
from __future__ import annotations

import pytest

from engine.config import parse_config
from gateway.handoff import APPLIED, Delivery, EmbeddedHandoff
from gateway.inbox import HEADER, Inbox
from schemas.dead_letter import DeadLetter
from sinks import open_ledger
from topologies.embedded import EmbeddedPipeline
from topologies.state_cache import META

CONFIG = parse_config({"currency": "USD", "commission": {"levels": ["0.10", "0.05", "0.02"]}})


def payloads(n: int, start: int = 0) -> list[bytes]:
    return [f'{{"n":{i}}}'.encode() * (1 + i % 3) for i in range(start, start + n)]


def test_records_round_trip_in_order_and_numbering_continues_after_a_reopen(tmp_path):
    inbox = Inbox(tmp_path)
    assert inbox.append(payloads(3)) == 3 and inbox.append(payloads(2, 3)) == 5
    assert list(inbox.replay(0)) == list(enumerate(payloads(5), 1))
    assert [s for s, _ in inbox.replay(3)] == [4, 5]
    inbox.close()
    again = Inbox(tmp_path)
    assert again.append([b"six"]) == 6 and list(again.replay(5)) == [(6, b"six")]
    again.close()


@pytest.mark.parametrize("damage", ["cut in the payload", "cut in the header", "bad crc", "zeros"])
def test_a_torn_last_record_is_ignored_and_cut_away_before_the_next_append(tmp_path, damage):
    inbox = Inbox(tmp_path)
    inbox.append(payloads(3))
    inbox.close()
    (_, path), = Inbox(tmp_path).segments()
    data = path.read_bytes()
    if damage == "cut in the payload":
        data = data[:-3]
    elif damage == "cut in the header":
        data = data + HEADER.pack(100, 0, 4)[:7]
    elif damage == "bad crc":
        data = data[:-1] + bytes([data[-1] ^ 1])
    else:  # a crash can leave a preallocated, zero-filled tail
        data = data + b"\0" * 64
    path.write_bytes(data)
    survivors = 2 if damage in ("cut in the payload", "bad crc") else 3
    inbox = Inbox(tmp_path)
    assert list(inbox.replay(0)) == list(enumerate(payloads(3), 1))[:survivors]
    assert path.stat().st_size == sum(HEADER.size + len(x) for x in payloads(3)[:survivors])  # the tail is cut
    assert inbox.append([b"next"]) == survivors + 1
    assert list(inbox.replay(0))[-1] == (survivors + 1, b"next")
    inbox.close()


def test_segments_rotate_and_are_deleted_once_applied_and_numbering_survives_their_loss(tmp_path):
    inbox = Inbox(tmp_path, segment_bytes=64)
    for i in range(10):
        inbox.append(payloads(2, 2 * i))
    firsts = [first for first, _ in inbox.segments()]
    assert len(firsts) > 3 and firsts[0] == 1
    assert inbox.release(0) == 0
    deleted = inbox.release(12)
    assert deleted > 0 and [s for s, _ in inbox.replay(12)] == list(range(13, 21))
    assert inbox.segments()[0][0] <= 13  # the segment holding 13 is kept
    inbox.release(20)
    assert len(inbox.segments()) == 1  # the one being appended to stays
    inbox.close()
    for _, path in Inbox(tmp_path).segments():
        path.unlink()
    reopened = Inbox(tmp_path, applied=20)  # segments gone (by hand): the state's position still counts
    assert reopened.append([b"x"]) == 21
    reopened.close()


def joined(pid: str, parent: str | None) -> dict:
    return {"type": "promoter.joined", "event_id": f"j-{pid}", "ts": "2026-10-01T09:00:00+08:00",
            "promoter_id": pid, "parent_id": parent}


def paid(n: int) -> Delivery:
    events = [{"type": "customer.bound", "event_id": f"b-{n}", "ts": "2026-11-01T10:00:00+08:00",
               "customer_id": f"C{n}", "promoter_id": "P3", "via": "link"},
              {"type": "order.paid", "event_id": f"paid-{n}", "ts": "2026-11-01T10:30:00+08:00", "order_id": f"O{n}",
               "customer_id": f"C{n}", "currency": "USD",
               "items": [{"sku": "S1", "category": "toys", "price": "100.00", "qty": 1}]}]
    return Delivery("gateway:events", f"r{n}", events)


def ledger_orders(ledger) -> dict[str, int]:
    return dict(ledger.query("SELECT order_id, count() FROM commission_ledger GROUP BY order_id").rows)


def test_a_restart_replays_the_inbox_from_the_applied_position_and_counts_each_order_once(tmp_path):
    ledger = open_ledger(None, tmp_path)
    first = EmbeddedHandoff(EmbeddedPipeline(CONFIG, tmp_path, ledger))
    assert first.replayed == 0
    chain = Delivery("gateway:events", "r0", [joined("P1", None), joined("P2", "P1"), joined("P3", "P2")])
    refused = Delivery("gateway:shopify", "r-bad", dead=[DeadLetter.of("gateway:shopify", "r-bad", "{}", "bad signature")])
    first._apply([chain, paid(1), paid(2), refused], 4)  # what the consumer does behind the answers
    assert first.pipeline.cache.get(META, APPLIED) == 4
    first.inbox.append([d.encode() for d in (chain, paid(1), paid(2), refused)])  # seqs 1-4: applied
    first.inbox.append([paid(3).encode(), paid(4).encode(), paid(1).encode()])  # 5-7: acknowledged, then a kill
    first.pipeline.close()  # (a SIGKILL closes nothing; the state on disk is what the last flush wrote)
    first.inbox.close()

    second = EmbeddedHandoff(EmbeddedPipeline(CONFIG, tmp_path, ledger))
    assert second.replayed == 3 and second.applied == 7  # from the position, not from the start
    assert ledger_orders(ledger) == {f"O{n}": 3 for n in (1, 2, 3, 4)}  # 1 item × 3 levels, each once

    # a crash after the ledger took a batch and before the state: the next start redoes it from
    # the older position; the ledger counts the rows once
    second.inbox.append([paid(5).encode(), paid(6).encode()])
    real = second.pipeline.state.write

    def crash(changes):
        raise OSError("killed between the ledger and the state")
    second.pipeline.state.write = crash
    with pytest.raises(OSError):
        second._apply([paid(5), paid(6)], 9)
    second.pipeline.state.write = real
    assert ledger_orders(ledger)["O5"] == 3  # the ledger has them, the state does not
    second.pipeline.close()
    second.inbox.close()

    third = EmbeddedHandoff(EmbeddedPipeline(CONFIG, tmp_path, ledger))
    assert third.replayed == 2 and third.applied == 9
    assert ledger_orders(ledger) == {f"O{n}": 3 for n in range(1, 7)}
    dead = ledger.query("SELECT position, reason FROM dead_letters").rows
    assert dead == [("r-bad", "bad signature")]
    third.pipeline.close()
    third.inbox.close()
    ledger.close()


def test_a_delivery_round_trips_through_its_inbox_record():
    d = Delivery("gateway:shopify", "rid", [{"type": "click", "price": "1.10", "名": "ü"}],
                 [DeadLetter.of("gateway:shopify", "rid", "raw body", "why", "key")])
    assert Delivery.decode(d.encode()) == d
