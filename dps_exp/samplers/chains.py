"""Per-sample chains: each slot of a batch walks its own timesteps with its own update coefficients, at its own
position, so samples with different step counts (or entering the batch at different times) share one network
pass per step.

Everything the loop reads lives on the device, padded to the longest chain: row b of `t` and of each
coefficient table is slot b's chain, `pos` its position and `lens` its length. The host keeps the positions and
lengths too (it decides which slots finish), so nothing is read back from the device inside the loop.
"""

from __future__ import annotations

import torch
from torch import Tensor


class Chains:
    """`capacity` slots; chains of up to `max_len` steps; coefficient tables named `names`."""

    def __init__(self, capacity: int, max_len: int, names: tuple[str, ...], device: torch.device):
        self.t = torch.zeros(capacity, max_len, dtype=torch.long, device=device)
        self.coef = {n: torch.zeros(capacity, max_len, device=device) for n in names}
        self.pos = torch.zeros(capacity, dtype=torch.long, device=device)
        self.lens = torch.zeros(capacity, dtype=torch.long, device=device)
        self.host_pos = [0] * capacity
        self.length = [0] * capacity

    def ensure(self, max_len: int) -> None:
        """Room for chains of `max_len` steps (a longer chain than any before pads the tables)."""
        extra = max_len - self.t.shape[1]
        if extra > 0:
            self.t = torch.nn.functional.pad(self.t, (0, extra))
            self.coef = {k: torch.nn.functional.pad(v, (0, extra)) for k, v in self.coef.items()}

    def set(self, b: int, ts: Tensor, tables: dict[str, Tensor]) -> None:
        """Slot b starts the chain of timesteps `ts` (S,) with coefficients `tables` ({name: S values})."""
        n = len(ts)
        self.t[b, :n] = ts
        for name, table in tables.items():
            self.coef[name][b, :n] = table.reshape(n)
        self.pos[b], self.lens[b] = 0, n
        self.host_pos[b], self.length[b] = 0, n

    def now(self, n: int) -> tuple[Tensor, dict[str, Tensor], Tensor]:
        """Slots 0 … n − 1: their current timesteps (n,), coefficients ({name: (n, 1, 1, 1)}) and whether each is
        still walking (n,) bool (a slot past its end computes on, its result masked out)."""
        index = self.pos[:n, None].clamp_max(self.t.shape[1] - 1)
        t = self.t[:n].gather(1, index)[:, 0]
        return (
            t,
            {k: v[:n].gather(1, index).view(-1, 1, 1, 1) for k, v in self.coef.items()},
            self.pos[:n] < self.lens[:n],
        )

    def advance(self, n: int) -> list[int]:
        """Move slots 0 … n − 1 one step on; returns those that have just taken their last step."""
        self.pos[:n] += 1
        done = []
        for b in range(n):
            self.host_pos[b] += 1
            if self.host_pos[b] == self.length[b]:
                done.append(b)
        return done

    def move(self, src: int, dst: int) -> None:
        """Slot `src`'s chain into slot `dst` (to keep the occupied slots at the front)."""
        for table in (self.t, self.pos, self.lens, *self.coef.values()):
            table[dst] = table[src]
        self.host_pos[dst], self.length[dst] = self.host_pos[src], self.length[src]
