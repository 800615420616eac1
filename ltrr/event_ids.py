"""Event ids: unique across processes, restarts and loads of the same event log.

By default an id is a version-4 UUID from the operating system's random source
(``uuid.uuid4``): no state to persist or share, so two serving processes, a restarted one, or an
engine loaded twice on the same event log never draw the same id (a seeded stream restarting at
``Engine.load`` once made every ``ltrr search`` print the same id and a second load fail with a
UNIQUE constraint error).

Simulations must be reproducible (same seed, same log), so ``store.event_ids = "seeded"`` draws
UUIDs from a stream seeded by the engine's seed *and the number of decisions already in its event
log*: a fresh log gives the same ids every run, and an engine continuing an existing log starts a
different stream instead of repeating the ids it logged before.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ltrr.config import EngineConfig
    from ltrr.store.log_contract import EventStore


class EventIds:
    """Draws event ids: OS-random UUIDs, or a seeded stream of UUIDs (see the module docstring)."""

    def __init__(self, seed: int | list[int] | None = None):
        self._rng = None if seed is None else np.random.default_rng(np.random.SeedSequence(seed))

    @classmethod
    def for_config(cls, config: EngineConfig, events: EventStore) -> EventIds:
        if config.store.event_ids == "seeded":
            return cls([int(config.seed), 0x1D5, events.last_seq()])
        return cls()

    @property
    def seeded(self) -> bool:
        return self._rng is not None

    def next(self) -> str:
        if self._rng is None:
            return str(uuid.uuid4())
        hi, lo = (int(v) for v in self._rng.integers(0, 2**63, size=2))
        return str(uuid.UUID(int=(hi << 64) | lo, version=4))

    def state(self) -> dict[str, Any] | None:
        """The seeded stream's position (None for OS-random ids): replay checkpoints keep it."""
        return None if self._rng is None else dict(self._rng.bit_generator.state)

    def restore(self, state: dict[str, Any] | None) -> None:
        if state is not None and self._rng is not None:
            self._rng.bit_generator.state = state
