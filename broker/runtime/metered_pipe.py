"""A pipe whose reads (the download direction: destination → agent) draw on its tenant's
bandwidth share: when the tenant's bucket runs dry, reading pauses until it has refilled, so a
municipality's heavy download slows that municipality only (broker/fair_share.py).

Flow control and the bucket pause reading for different reasons; reading resumes only when
neither holds it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from broker.fair_share import TokenBucket
from ztcore.runtime.pipe import StreamPipe


class MeteredPipe(StreamPipe):
    def __init__(self, bucket: TokenBucket, clock: Callable[[], float]) -> None:
        super().__init__()
        self.bucket, self.clock = bucket, clock
        self._flow_paused = True      # a pipe starts paused until its stream may carry data
        self._rate_paused = False

    def buffer_updated(self, nbytes: int) -> None:
        super().buffer_updated(nbytes)
        delay = self.bucket.consume(nbytes, self.clock())
        if delay > 0 and not self._rate_paused and self.transport is not None:
            self._rate_paused = True
            self.transport.pause_reading()
            asyncio.get_running_loop().call_later(delay, self._refilled)

    def _refilled(self) -> None:
        self._rate_paused = False
        if not self._flow_paused:
            super().resume_reading()

    def pause_reading(self) -> None:
        self._flow_paused = True
        super().pause_reading()

    def resume_reading(self) -> None:
        self._flow_paused = False
        if not self._rate_paused:
            super().resume_reading()
