"""Files decoded and prepared ahead of the model, for ``brainmri predict`` and the
calibration (``Prefetch``): by threads (Pillow, OpenCV and NumPy release the GIL), or,
for a large folder, by worker processes that start before TensorFlow is imported. The
images decoded at once share one memory budget, reserved from each file's header, so
that peak memory stays bounded whatever the number of workers."""

from __future__ import annotations

import math
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from itertools import chain, islice
from pathlib import Path

import numpy as np

from brainmri.data.images import ImageReadError, decode, header_pixels
from brainmri.data.pixels import PixelSpec, bounded, crop_to_head, grey_levels, resize
from brainmri.modeling import ood
from brainmri.modeling.saved import pixel_spec

#: Memory the inputs prepared ahead of the model may take (each is one uint8 model input,
#: 48 KB at 128 px RGB, plus a few statistics): enough to prepare a whole folder of a
#: few thousand images while TensorFlow loads, small whatever the folder's size.
PREFETCH_BYTES = 128 * 2**20

#: Inputs prepared ahead by default when ``Prefetch`` is used directly.
PREFETCH = 512

#: Inputs per task sent to a worker process (fewer round trips than one per input).
PROCESS_CHUNK = 16

#: ``brainmri predict`` prepares inputs in worker processes from this many files on
#: (below it, starting the processes costs more than it saves).
PROCESS_MIN_FILES = 256

#: Most threads that may prepare inputs (``--workers`` above it is refused): decoding is
#: bounded by memory (``DECODE_BUDGET``) and the CPU long before.
MAX_WORKERS = 32

#: Most worker processes (each holds its own imports, about 150 MB).
MAX_PROCESSES = 8

#: Memory the images being decoded at once may take, over all threads and processes of
#: one ``Prefetch``: an image waits for its share before it is decoded. A 49-megapixel
#: JPEG takes ``BYTES_PER_PIXEL`` x 49e6 = 400 MB until it is reduced to ``MAX_SIDE``.
DECODE_BUDGET = 1 * 2**30

#: Peak bytes per pixel of the header's size while one image is decoded and reduced
#: (Pillow's 4-byte pixels, the NumPy copy, the reduction; measured on a 7000 x 7000
#: JPEG: 479 MB, 9.8 bytes per pixel).
BYTES_PER_PIXEL = 10

#: Allocations from this size on get their own memory map, given back to the system when
#: freed (glibc's ``M_MMAP_THRESHOLD``). By default the threshold rises after each large
#: free, and each decoding thread's arena then keeps hundreds of MB after its image is
#: gone: peak memory at 8 workers on 49-megapixel JPEGs 2.5 GB with, 1.4 GB without.
MMAP_THRESHOLD = 4 * 2**20


def default_workers() -> int:
    """Threads that decode and prepare images: one per CPU core, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


_MALLOC_SET = False


def _large_blocks_to_system() -> None:
    """Set ``MMAP_THRESHOLD`` once per process, where the C library is glibc."""
    global _MALLOC_SET
    if _MALLOC_SET:
        return
    _MALLOC_SET = True
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(-3, MMAP_THRESHOLD)  # -3: M_MMAP_THRESHOLD (malloc.h)
    except (OSError, AttributeError, TypeError):  # not glibc: its own policy stays
        pass


class _Budget:
    """A weighted semaphore on bytes, for threads (``threading``) or processes (a
    ``multiprocessing`` condition and shared counter): ``hold(n)`` waits until ``n``
    bytes fit under the limit. A request larger than the limit waits until nothing else
    is held, then runs alone."""

    def __init__(self, limit: int, condition, used):
        self.limit, self._condition, self._used = int(limit), condition, used

    @classmethod
    def for_threads(cls, limit: int) -> _Budget:
        import threading

        class Counter:
            value = 0

        return cls(limit, threading.Condition(), Counter())

    @classmethod
    def for_processes(cls, limit: int, context) -> _Budget:
        return cls(limit, context.Condition(), context.Value("q", 0, lock=False))

    def __getstate__(self):  # sent to spawned workers through the pool's initializer
        return self.limit, self._condition, self._used

    def __setstate__(self, state):
        self.limit, self._condition, self._used = state

    @contextmanager
    def hold(self, amount: int) -> Iterator[None]:
        amount = max(0, min(int(amount), self.limit))
        with self._condition:
            while self._used.value and self._used.value + amount > self.limit:
                self._condition.wait()
            self._used.value += amount
        try:
            yield
        finally:
            with self._condition:
                self._used.value -= amount
                self._condition.notify_all()


#: The budget of this process's decoding threads (a worker process gets its pool's).
_budget = _Budget.for_threads(DECODE_BUDGET)


@dataclass
class Prepared:
    """One input ready for the model, or the reason it is not. ``stats``: the
    ``ood.image_statistics`` of the whole frame, when the sidecar's checks need them;
    ``index``: the input's position."""

    path: Path | str
    pixels: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    error: str = ""
    stats: dict[str, float] | None = None
    index: int = -1


def prepare_pixels(path: Path | str, pixels: np.ndarray, spec: PixelSpec,
                   notes: Sequence[str] = (), statistics: bool = False) -> Prepared:
    """Decoded pixels (H, W, C uint8) to one model input: reduced to ``MAX_SIDE`` when
    larger (so the work per image is bounded), checked, cropped and resized."""
    shape = pixels.shape
    pixels = bounded(pixels)
    grey = grey_levels(pixels)
    notes = [*notes, *ood.image_warnings(pixels, spec.image_size, shape, grey=grey)]
    stats = ood.image_statistics(pixels) if statistics else None
    if spec.crop == "head":
        pixels = crop_to_head(pixels, grey=grey)
    return Prepared(path, resize(pixels, spec), notes, stats=stats)


def prepare(path: Path, spec: PixelSpec, statistics: bool = False) -> Prepared:
    """Decode, check and resize one file as ``data.pixels.load_file`` does; never raises
    for a bad file (ImageReadError becomes ``error``). The decoded image is held only
    within its share of the decoding budget (from its header's size), so that the
    full-size images in memory at once stay under ``DECODE_BUDGET`` however many
    workers there are."""
    with _budget.hold(header_pixels(path) * BYTES_PER_PIXEL):
        try:
            decoded = decode(path, spec.color_mode)
        except ImageReadError as exc:
            return Prepared(path, error=str(exc))
        item = prepare_pixels(path, decoded.pixels, spec, decoded.warnings, statistics)
        del decoded  # before the share is given back
    return item


def _prepare_source(index: int, source, spec: PixelSpec, statistics: bool) -> Prepared:
    """``prepare`` for a file path, ``prepare_pixels`` for a decoded array."""
    if isinstance(source, np.ndarray):
        item = prepare_pixels(f"<image {index}>", source, spec, statistics=statistics)
    else:
        item = prepare(Path(source), spec, statistics)
    item.index = index
    return item


def _run_chunk(work: Callable[[int, object], Prepared], items: list) -> list[Prepared]:
    return [work(index, source) for index, source in items]


def _start_worker(budget: _Budget) -> None:
    """A worker process leaves Ctrl-C to the parent, which stops it (no tracebacks), and
    shares the pool's decoding budget."""
    global _budget
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _budget = budget
    _large_blocks_to_system()


class Prefetch:
    """Prepared inputs in input order, made by ``workers`` threads (or processes) up to
    ``ahead`` items before they are needed. Work starts on creation, so that decoding
    overlaps the model's loading; ``close`` (or leaving the ``with`` block) cancels what
    is left.

    Threads suit a few files and any caller. Processes suit many files from a fresh
    command: importing TensorFlow holds the GIL for seconds, during which threads barely
    progress while a worker process prepares hundreds of images. Processes are spawned
    (not forked: the parent may hold TensorFlow's threads) and get chunks of
    ``PROCESS_CHUNK`` inputs; if one dies (e.g. killed for memory), the rest is
    prepared in this process."""

    def __init__(self, sources: Iterable, work: Callable[[int, object], Prepared],
                 workers: int | None = None, ahead: int = PREFETCH, processes: bool = False):
        workers = default_workers() if workers is None else max(1, int(workers))
        workers = min(workers, MAX_PROCESSES if processes else MAX_WORKERS)
        _large_blocks_to_system()
        self._work = work
        self._sources: Iterator = enumerate(sources)
        self._chunk = PROCESS_CHUNK if processes else 1
        self._pending: deque[tuple[list, Future]] = deque()
        self._ready: deque[Prepared] = deque()
        self._pool = None
        if processes:
            import multiprocessing

            try:
                context = multiprocessing.get_context("spawn")
                budget = _Budget.for_processes(DECODE_BUDGET, context)
                self._pool = ProcessPoolExecutor(workers, context, initializer=_start_worker,
                                                 initargs=(budget,))
            except (OSError, NotImplementedError):  # no process support here: threads
                processes, self._chunk = False, 1
        if not processes and workers > 1:
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="brainmri-prepare")
        self._ahead = max(1, ahead // self._chunk)  # chunks in flight
        self._fill()

    def _take(self) -> list:
        return list(islice(self._sources, self._chunk))

    def _fill(self) -> None:
        while self._pool is not None and len(self._pending) < self._ahead:
            items = self._take()
            if not items:
                return
            self._pending.append((items, self._pool.submit(_run_chunk, self._work, items)))

    def _in_process(self, items: list) -> None:
        """Prepare ``items`` and everything after them here, from now on."""
        rest = [x for chunk, _ in self._pending for x in chunk]
        self.close()
        self._sources = chain(rest, self._sources)
        self._chunk = 1
        self._ready.extend(_run_chunk(self._work, items))

    def __iter__(self) -> Iterator[Prepared]:
        return self

    def __next__(self) -> Prepared:
        while not self._ready:
            if self._pool is None:
                items = self._take()
                if not items:
                    raise StopIteration
                self._ready.extend(_run_chunk(self._work, items))
                continue
            if not self._pending:
                raise StopIteration
            items, future = self._pending.popleft()
            self._fill()  # keep the workers busy while this chunk is waited for
            try:
                self._ready.extend(future.result())
            except BrokenExecutor:
                self._in_process(items)
        return self._ready.popleft()

    def close(self) -> None:
        if self._pool is not None:
            for _, future in self._pending:
                future.cancel()
            self._pending.clear()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start(sources: Sequence, metadata: dict, workers: int | None = None,
          statistics: bool | None = None, processes: bool = False) -> Prefetch:
    """Begin preparing ``sources`` (file paths, or decoded (H, W, C) uint8 arrays) for a
    model with sidecar ``metadata``: the image statistics are measured when its sidecar
    has calibrated checks (or when ``statistics`` says so). ``processes``: worker
    processes instead of threads (see ``Prefetch``), ``workers`` of them (default: one
    per CPU core but one, which the model's loading and forward pass use)."""
    spec = pixel_spec(metadata)
    if statistics is None:
        statistics = bool((metadata.get("ood") or {}).get("checks"))
    if processes and workers is None:
        workers = max(1, default_workers() - 1)
    # a few for large model inputs (a 2048 px one is 12 MB), thousands for small ones
    ahead = max(8, min(4096, PREFETCH_BYTES // math.prod(spec.shape)))
    work = partial(_prepare_source, spec=spec, statistics=statistics)
    return Prefetch(sources, work, workers, ahead, processes)
