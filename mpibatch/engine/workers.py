"""Which workers can take work, and when the job gives up for want of one."""
from __future__ import annotations

from typing import Iterable, Optional

from ..output.logs import FirstError


class Workers:
    """`live` are the workers that can take work. One whose init() failed never can. The inline
    executor cannot kill a call, so one held by a call past run_invocation_timeout is written off
    until the call returns (its "ready"). With work left and none live, the job fails: at once when
    init() failed everywhere, else once the last one to stall had one more timeout to return."""

    def __init__(self, ranks: Iterable[int], timeout: float) -> None:
        self.live = list(ranks)
        self.timeout = timeout
        self.stalled: set[int] = set()
        self.last_stall = 0.0  # monotonic time a worker last stalled
        self.stall_error: Optional[FirstError] = None  # the first hung call
        self.init_error: Optional[FirstError] = None  # the first failed init()

    def ready(self, rank: int) -> bool:
        """A worker finished init() or a hung call: True if it was held and is live again."""
        if rank not in self.stalled:
            return False
        self.stalled.discard(rank)
        self.live.append(rank)
        return True

    def stall(self, rank: int, now: float, failure: FirstError) -> None:
        self.stalled.add(rank)
        self._drop(rank)
        self.last_stall = now
        self.stall_error = self.stall_error or failure

    def init_failed(self, rank: int, failure: FirstError) -> None:
        self.init_error = self.init_error or failure
        self._drop(rank)

    def none_left(self, now: float) -> Optional[tuple[str, Optional[FirstError]]]:
        """With work left and no live worker: why the job fails, and the error to show first; None
        while a held worker may still return."""
        if self.stalled:
            if now < self.last_stall + self.timeout:
                return None
            return (f"no worker can run: each is held by a run() call that did not return within "
                    f"run_invocation_timeout={self.timeout:g}s, and the inline executor cannot kill a call; "
                    "use executor: process, which kills hung calls"), self.stall_error
        error = self.init_error.summary if self.init_error else "no worker could start"
        return f"init() failed on every worker: {error}", self.init_error

    def _drop(self, rank: int) -> None:
        if rank in self.live:
            self.live.remove(rank)
