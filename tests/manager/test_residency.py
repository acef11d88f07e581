"""The host-RAM tier's bookkeeping and the eviction order, with fake RAM readings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vramdeck.manager.residency import (
    Candidate,
    HostTier,
    Residency,
    default_host_cache_bytes,
    eviction_order,
    eviction_reason,
)

GIB = 1024**3


class FakeRam:
    """Host RAM that parking really takes from: `available` drops as the tier fills."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0

    def available(self) -> int:
        return self.total - self.held


def park(tier: HostTier, ram: FakeRam, task: str, nbytes: int) -> tuple[bool, tuple[str, ...]]:
    answer = tier.admit(task, nbytes)
    if answer.admitted:
        for gone in answer.dropped:
            ram.held -= tier.remove(gone)
        tier.add(task, nbytes)
        ram.held += nbytes
    return answer.admitted, answer.dropped


def test_a_tier_with_room_admits_without_dropping():
    ram = FakeRam(64 * GIB)
    tier = HostTier(8 * GIB, ram.available, headroom_bytes=GIB)
    assert park(tier, ram, "a", 3 * GIB) == (True, ())
    assert park(tier, ram, "b", 3 * GIB) == (True, ())
    assert tier.tasks() == ["a", "b"] and tier.used_bytes == 6 * GIB


def test_a_full_tier_drops_its_oldest_to_admit():
    ram = FakeRam(64 * GIB)
    tier = HostTier(8 * GIB, ram.available, headroom_bytes=GIB)
    for task in ("a", "b", "c"):
        park(tier, ram, task, 3 * GIB - 1)
    assert tier.tasks() == ["b", "c"]  # "a" left for "c"
    assert park(tier, ram, "d", 5 * GIB) == (True, ("b",))
    assert tier.tasks() == ["c", "d"] and ram.held == 8 * GIB - 1
    assert park(tier, ram, "e", 6 * GIB) == (True, ("c", "d"))


def test_nothing_is_dropped_for_a_model_larger_than_the_budget():
    ram = FakeRam(64 * GIB)
    tier = HostTier(4 * GIB, ram.available, headroom_bytes=GIB)
    park(tier, ram, "a", 2 * GIB)
    answer = tier.admit("big", 5 * GIB)
    assert not answer.admitted and answer.dropped == () and "budget" in answer.reason
    assert tier.tasks() == ["a"]


def test_parking_never_eats_into_the_hosts_headroom():
    ram = FakeRam(10 * GIB)
    ram.held = 6 * GIB  # other programs
    tier = HostTier(8 * GIB, ram.available, headroom_bytes=2 * GIB)
    assert park(tier, ram, "a", 2 * GIB) == (True, ())
    answer = tier.admit("b", 1 * GIB)  # 2 GiB free, all of it headroom
    assert not answer.admitted and "free RAM" in answer.reason
    assert tier.tasks() == ["a"]


def test_dropping_counts_the_ram_it_frees():
    ram = FakeRam(10 * GIB)
    ram.held = 4 * GIB
    tier = HostTier(4 * GIB, ram.available, headroom_bytes=2 * GIB)
    park(tier, ram, "a", 4 * GIB)  # 2 GiB free now: all headroom
    assert park(tier, ram, "b", 3 * GIB) == (True, ("a",))


def test_a_zero_budget_turns_the_tier_off():
    tier = HostTier(0, lambda: 64 * GIB)
    assert not tier.enabled
    answer = tier.admit("a", 1)
    assert not answer.admitted and "off" in answer.reason


def test_the_default_budget_is_a_share_of_the_hosts_ram():
    assert 0 < default_host_cache_bytes(64 * GIB) < 64 * GIB


def test_the_cheapest_loss_goes_first():
    now = 1000.0
    idle_fast = Candidate("idle-fast", last_used=now - 600, restore_s=0.2)
    busy_slow = Candidate("busy-slow", last_used=now - 5, restore_s=30.0)
    idle_slow = Candidate("idle-slow", last_used=now - 600, restore_s=30.0)
    order = list(eviction_order([busy_slow, idle_slow, idle_fast], now=now))
    assert [c.task for c in order] == ["idle-fast", "idle-slow", "busy-slow"]


def test_priority_protects_a_model():
    now = 1000.0
    plain = Candidate("plain", last_used=now - 60, restore_s=1.0)
    important = Candidate("important", last_used=now - 120, restore_s=1.0, priority=10)
    assert [c.task for c in eviction_order([important, plain], now=now)] == ["plain", "important"]


def test_ties_go_to_the_least_recently_used():
    now = 1000.0
    first = Candidate("first", last_used=now - 60, restore_s=1.0)
    second = Candidate("second", last_used=now - 60, restore_s=1.0)
    assert [c.task for c in eviction_order([first, second], now=now)] == ["first", "second"]


@pytest.mark.parametrize(
    ("residency", "idle_s", "restore_s", "words"),
    [
        (Residency.HOST, 14 * 60, 0.2, "idle 14 min, back in 0.2 s from RAM"),
        (Residency.OFF, 30, 2.5, "idle 30 s, back in 2.5 s by a reload"),
        (
            Residency.SLEEPING,
            2 * 3600,
            0.05,
            "idle 2.0 h, back in under 0.1 s by waking its server",
        ),
    ],
)
def test_the_reason_says_why_in_words(residency, idle_s, restore_s, words):
    c = Candidate("t", last_used=100.0, restore_s=restore_s, residency_after=residency)
    assert eviction_reason(c, now=100.0 + idle_s) == words


@settings(max_examples=200, deadline=None)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["add", "remove", "copy"]),
            st.sampled_from("abcd"),
            st.integers(0, 5 * GIB),
        ),
        max_size=30,
    )
)
def test_a_tiers_used_bytes_and_holdings_follow_what_it_holds(ops: list) -> None:
    """`used_bytes` is kept as the tier changes, not summed; `holdings` names what it holds
    (the same name means the same models and bytes, in tiers and their copies alike), which
    previews key their answers on."""
    tiers = [HostTier(16 * GIB, lambda: 64 * GIB)]
    named: dict[int, list[tuple[str, int]]] = {}
    for op, task, nbytes in ops:
        tier = tiers[-1]
        if op == "add":
            tier.add(task, nbytes)
        elif op == "remove":
            tier.remove(task)
        else:
            tiers.append(tier.copy())
        for each in tiers:
            held = [(t, each.bytes_of(t)) for t in each.tasks()]
            assert each.used_bytes == sum(b for _, b in held)
            assert named.setdefault(each.holdings, held) == held
