"""Decoding and the model, off the event loop: bounded threads, queue, time and pixels.

    mnistlab serve     # every POST route runs its images through one WorkPool

Decoding an image holds ~12 bytes per pixel at its peak (a 40-megapixel PNG of 150 KB: 475 MB,
measured with ru_maxrss), so a handful of large uploads at once can take gigabytes however small
their files are. A WorkPool therefore reads each request's pixel count from the image headers
first and lets it decode only while all requests together stay within Limits.max_decoding_pixels;
a request that does not fit waits in the event loop, holding no thread, so small images go on
being answered beside a large one.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from mnistlab.data import MAX_PIXELS, header_pixels
from mnistlab.serve.requests import ApiError, Limits, Upload

T = TypeVar("T")

def pixels_of(uploads: list[Upload]) -> int:
    """The pixels decoding the uploads will hold, read from their headers (nothing is decoded).

    An upload that is no image, or is over MAX_PIXELS, counts 0: decode_image refuses it before
    decoding anything.
    """
    return sum(header_pixels(upload.data) for upload in uploads)


class PixelBudget:
    """Pixels being decoded, shared by all requests; used from the event loop's thread only."""

    def __init__(self, total: int):
        self.total = total
        self.used = 0
        self._waiters: list[asyncio.Future[None]] = []

    async def acquire(self, pixels: int) -> None:
        """Wait until `pixels` more fit, then take them; whoever fits first goes first, so a
        small request is not held up behind a large one that waits."""
        while self.used + pixels > self.total:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
        self.used += pixels

    def release(self, pixels: int) -> None:
        self.used -= pixels
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


class WorkPool:
    """Threads for decoding and the model, with a bounded queue, a deadline and a pixel budget."""

    def __init__(self, threads: int, limits: Limits):
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="mnistlab-serve")
        # Headers are read in a thread of their own: Pillow stays off the event loop, and counting
        # a request's pixels never queues behind the model's work.
        self._counter = ThreadPoolExecutor(1, thread_name_prefix="mnistlab-pixels")
        self._slots = threading.BoundedSemaphore(limits.max_pending)
        self._timeout = limits.work_timeout_s
        self._budget = PixelBudget(limits.max_decoding_pixels)

    async def run(self, uploads: list[Upload], fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) in a thread, once the pixels of `uploads` (which fn decodes) fit the budget.

        Raises:
            ApiError: 503 when the queue is full or the deadline passes (waiting included), 413
                when the uploads alone hold more pixels than the budget.
        """
        loop = asyncio.get_running_loop()
        pixels: int | None = None
        job: Future[T] | None = None
        try:
            async with asyncio.timeout(self._timeout):
                pixels = await asyncio.wrap_future(self._counter.submit(pixels_of, uploads))
                most = min(MAX_PIXELS, self._budget.total)  # a request's, and all requests' at once
                if pixels > most:
                    raise ApiError(413, f"the images hold {pixels:,} pixels together; the most is {most:,}; "
                                        "send fewer or smaller images")
                # The budget first, then a place in the queue: requests waiting for pixels hold no
                # place, so they cannot crowd out small ones that fit.
                await self._budget.acquire(pixels)
                job = self._start(loop, pixels, fn, *args)
                return await asyncio.wrap_future(job)
        except TimeoutError:
            if pixels is not None and job is None:
                reason = (f"other requests' images fill the server's budget of {self._budget.total:,} pixels "
                          "being decoded; try again in a moment")
            else:
                reason = f"the work took longer than {self._timeout:g} s; send fewer or smaller images"
            raise ApiError(503, reason) from None

    def _start(self, loop: asyncio.AbstractEventLoop, pixels: int, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Hand fn to a thread with a place in the queue; the place and the `pixels` taken from the
        budget are given back when the work really ends: a timed-out job holds both while it runs
        (a thread cannot be stopped)."""
        if not self._slots.acquire(blocking=False):
            self._budget.release(pixels)
            raise ApiError(503, "the server is busy; try again in a moment")
        try:
            job = self._pool.submit(fn, *args)
        except BaseException:
            self._slots.release()
            self._budget.release(pixels)
            raise
        job.add_done_callback(lambda _: self._finished(loop, pixels))
        return job

    def _finished(self, loop: asyncio.AbstractEventLoop, pixels: int) -> None:
        """A job's end, in its worker thread (or the loop's, when it was cancelled unstarted)."""
        self._slots.release()
        with contextlib.suppress(RuntimeError):  # the server stopped, and its loop with it
            loop.call_soon_threadsafe(self._budget.release, pixels)
