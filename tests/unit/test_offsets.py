from __future__ import annotations

import random

import pytest

from synctec_webhooks.offsets import OffsetTracker, PartitionOffsets


def _run(added: list[int], finished: list[int]) -> list[int | None]:
    offsets = PartitionOffsets()
    for offset in added:
        offsets.add(offset)
    return [offsets.done(offset) for offset in finished]


@pytest.mark.parametrize(
    ("added", "finished", "positions"),
    [
        pytest.param([0, 1, 2], [0, 1, 2], [1, 2, 3], id="in-order"),
        pytest.param([0, 1, 2], [2, 1, 0], [None, None, 3], id="reverse"),
        pytest.param([0, 1, 2, 3], [1, 0, 3, 2], [None, 2, None, 4], id="pairs-swapped"),
        pytest.param([0, 1, 2, 3], [2, 0, 3, 1], [None, 1, None, 4], id="middle-last"),
        pytest.param([10, 11, 12], [11, 10, 12], [None, 12, 13], id="not-from-zero"),
        pytest.param([5, 7, 9], [5, 9, 7], [7, None, 10], id="gaps"),
        pytest.param([0, 1], [0, 0, 1], [1, None, 2], id="finished-twice"),
        pytest.param([0, 1], [4, 0, 1], [None, 1, 2], id="unknown-offset"),
    ],
)
def test_out_of_order_completion(
    added: list[int], finished: list[int], positions: list[int | None]
) -> None:
    assert _run(added, finished) == positions


def test_adds_after_everything_finished() -> None:
    offsets = PartitionOffsets()
    offsets.add(0)
    assert offsets.done(0) == 1
    offsets.add(3)
    offsets.add(4)
    assert offsets.done(4) is None
    assert offsets.done(3) == 5


def test_in_flight_and_window() -> None:
    offsets = PartitionOffsets()
    for offset in range(5):
        offsets.add(offset)
    assert (offsets.in_flight, offsets.window) == (5, 5)
    for offset in (1, 2, 3):
        offsets.done(offset)
    # Offset 0 is stuck: three finished, but all five are still held.
    assert (offsets.in_flight, offsets.window) == (2, 5)
    assert offsets.done(0) == 4
    assert (offsets.in_flight, offsets.window) == (1, 1)


@pytest.mark.parametrize("offset", [3, 2])
def test_offsets_must_increase(offset: int) -> None:
    offsets = PartitionOffsets()
    offsets.add(3)
    with pytest.raises(ValueError, match="must increase"):
        offsets.add(offset)


def test_offsets_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        PartitionOffsets().add(-1)


class _Model:
    """The obvious O(n) version: position = lowest unfinished offset, or last + 1.

    `done` reports the position when that call moved it. An `add` after a gap, with
    nothing in flight, moves it silently (from last + 1 to the new offset): committing
    either is the same, as the offsets between do not exist.
    """

    def __init__(self) -> None:
        self.started: set[int] = set()
        self.unfinished: set[int] = set()
        self.position: int | None = None

    def _position(self) -> int:
        return min(self.unfinished) if self.unfinished else max(self.started) + 1

    def add(self, offset: int) -> None:
        self.started.add(offset)
        self.unfinished.add(offset)
        self.position = self._position()

    def done(self, offset: int) -> int | None:
        if offset not in self.unfinished:
            return None
        self.unfinished.discard(offset)
        new = self._position()
        if new == self.position:
            return None
        self.position = new
        return new


@pytest.mark.parametrize("seed", range(20))
def test_matches_naive_model(seed: int) -> None:
    rng = random.Random(seed)
    tracked, model = PartitionOffsets(), _Model()
    next_offset = rng.randrange(100)
    for _ in range(2000):
        if rng.random() < 0.5 or not model.unfinished:
            next_offset += rng.choice([1, 1, 1, 2, 5])  # gaps, as after compaction
            tracked.add(next_offset)
            model.add(next_offset)
        else:
            # Mostly offsets in flight; sometimes a duplicate or unknown one.
            candidates = sorted(model.unfinished)
            offset = (
                rng.choice(candidates) if rng.random() < 0.9 else rng.randrange(next_offset + 3)
            )
            assert tracked.done(offset) == model.done(offset), (seed, offset)
        assert tracked.in_flight == len(model.unfinished)
    # Drain: the final position is one past the last offset added.
    for offset in rng.sample(sorted(model.unfinished), len(model.unfinished)):
        assert tracked.done(offset) == model.done(offset)
    assert model.position == next_offset + 1 or not model.started
    assert tracked.in_flight == 0


def test_done_is_amortised_constant() -> None:
    # 100k in flight with the oldest stuck: finishing the others must not rescan them.
    offsets = PartitionOffsets()
    n = 100_000
    for offset in range(n):
        offsets.add(offset)
    for offset in range(1, n):
        assert offsets.done(offset) is None
    assert offsets.done(0) == n
    assert offsets.window == 0


# --- OffsetTracker -------------------------------------------------------------------


def test_tracker_keeps_partitions_apart() -> None:
    tracker = OffsetTracker()
    tracker.add("a", 0, 10)
    tracker.add("a", 1, 10)
    tracker.add("b", 0, 10)
    tracker.add("a", 0, 11)
    assert tracker.done("a", 0, 11) is None
    assert tracker.done("a", 1, 10) == 11
    assert tracker.done("a", 0, 10) == 12
    assert tracker.in_flight() == 1
    assert tracker.in_flight("b", 0) == 1
    assert tracker.done("b", 0, 10) == 11


def test_tracker_in_flight_filters() -> None:
    tracker = OffsetTracker()
    for topic, partition, offset in [("a", 0, 1), ("a", 0, 2), ("a", 1, 1), ("b", 0, 1)]:
        tracker.add(topic, partition, offset)
    assert tracker.in_flight() == 4
    assert tracker.in_flight("a") == 3
    assert tracker.in_flight("a", 0) == 2
    assert tracker.in_flight("a", 7) == 0
    assert tracker.in_flight("c") == 0
    with pytest.raises(ValueError, match="needs its topic"):
        tracker.in_flight(partition=0)


def test_tracker_forget_on_revoke() -> None:
    tracker = OffsetTracker()
    tracker.add("a", 0, 5)
    tracker.add("a", 0, 6)
    tracker.forget("a", 0)
    assert tracker.in_flight() == 0
    # A record from before the revoke finishing late moves nothing.
    assert tracker.done("a", 0, 5) is None
    # Re-assigned: tracking starts again, and may start lower than before.
    tracker.add("a", 0, 3)
    assert tracker.done("a", 0, 3) == 4
    tracker.forget("never", 9)  # harmless


def test_tracker_window() -> None:
    tracker = OffsetTracker()
    tracker.add("a", 0, 0)
    tracker.add("a", 0, 1)
    tracker.done("a", 0, 1)
    assert tracker.window("a", 0) == 2
    assert tracker.window("a", 1) == 0


def test_a_new_generation_after_forget_ignores_the_old_one() -> None:
    tracker = OffsetTracker()
    old = tracker.partition("t", 0)
    old.add(5)
    old.add(6)
    assert old.last == 6
    tracker.forget("t", 0)
    new = tracker.partition("t", 0)
    assert new is not old and tracker.current("t", 0) is new
    new.add(3)  # a rewind: allowed in the new generation
    assert old.done(5) == 6  # the old generation still answers for itself...
    assert new.in_flight == 1 and new.last == 3  # ...and does not touch the new one
    assert new.done(3) == 4
