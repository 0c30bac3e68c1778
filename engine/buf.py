"""The buffer pool: page frames, LRU eviction, the flush list and page flushing
(buf/buf0buf.cc, buf0lru.cc, buf0flu.cc).

Invariants (``_check`` asserts them):
  * at most ``capacity`` frames; a frame is dirty iff ``oldest_modification > 0`` iff it is in
    the flush list;
  * the flush list is ordered by (oldest_modification, space, page): its head is the checkpoint
    candidate (bug 11: recovered pages are inserted sorted, never appended);
  * ``oldest_modification <= newest_modification`` and FIL_PAGE_LSN of a dirty frame equals its
    newest_modification;
  * WAL: a page is written only after the log is durable up to its newest_modification
    (bug 14); with doublewrite on, only after its copy is durable (bug 6);
  * a frame fixed by an open mtr is never evicted or flushed.

The flush list (:class:`FlushList`) is kept as InnoDB keeps it.  On the normal path a page that
becomes dirty at mtr commit is appended at the tail in O(1) (buf_flush_insert_into_flush_list):
mtrs commit in LSN order and an mtr hands its pages over in page order, so appending keeps the
order.  During recovery, pages are inserted sorted by oldest_modification in O(log n)
(buf_flush_insert_sorted_into_flush_list, the InnoDB Plugin 1.0.7 fix): redo apply reaches them
in page order, not LSN order.  Re-dirtying a dirty page does not move it.

Flushing: a page-cleaner batch takes up to N pages from the flush-list head, makes the log
durable to their highest newest_modification, stamps page and trailer LSN and checksums,
writes them through the doublewrite buffer, writes them in place and fsyncs the data files.
LRU eviction of a dirty page does the same for one page through the single-page slot.  Without
the doublewrite buffer the in-place writes are left to the next checkpoint's fsync (as InnoDB
does with innodb_doublewrite=0); a page read back before then is checked against what was
written (engine.os_file, read your writes).
"""
from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterator
from itertools import chain, pairwise

from sortedcontainers import SortedKeyList

from tornpage.engine import page as fil_page
from tornpage.engine.errors import (BufferPoolFull, Corruption, EnginePanic, PageFromFuture,
                                   TornPageUnrepairable, WatchdogExpired)
from tornpage.engine.page import PAGE_OK, PAGE_TORN, PAGE_FROM_FUTURE


class Frame:
    """A buffer pool frame: the page bytes plus bookkeeping (LSNs are byte addresses)."""
    __slots__ = ("space", "page_no", "data", "oldest_modification", "newest_modification",
                 "fix_count")

    def __init__(self, space: int, page_no: int, data: bytearray) -> None:
        self.space = space
        self.page_no = page_no
        self.data = data
        self.oldest_modification = 0
        self.newest_modification = 0
        self.fix_count = 0

    @property
    def key(self) -> tuple[int, int]:
        return (self.space, self.page_no)

    def __repr__(self) -> str:
        return f"Frame({self.space}:{self.page_no}, oldest={self.oldest_modification}, " \
               f"newest={self.newest_modification}, fix={self.fix_count})"


def _flush_key(f: Frame) -> int:
    """(oldest_modification, space, page_no) packed in one int (space ids and page numbers are
    32-bit): the same order as the tuple, and much cheaper to compare in a 10^5-page list."""
    return (f.oldest_modification << 64) | (f.space << 32) | f.page_no


class FlushList:
    """The dirty frames in flushing order, oldest_modification first (buf_pool->flush_list).

    Two runs, the recovered run before the appended run:

    * the recovered run holds the pages recovery applied redo to, inserted sorted by
      ``_flush_key`` (:meth:`insert_sorted`, O(log n)).  InnoDB Plugin 1.0.7 finds the insert
      position in a red-black tree that exists only during recovery; this run is a
      ``SortedKeyList``.  After recovery it only shrinks, as its pages are flushed;
    * the appended run holds the pages mtr commits made dirty, appended at the tail
      (:meth:`append`, O(1)), kept in an ``OrderedDict`` of frames: a linked list with O(1)
      removal anywhere and O(1) access to its first frame.

    The whole list is ordered by ``_flush_key`` because its callers keep two rules, which
    :meth:`_check` asserts and nothing here enforces: pages are appended in key order (mtrs
    commit in LSN order and each hands its pages over in page order, all with its start LSN),
    and every recovered page comes before every appended one (redo apply inserts before any
    mtr commits, and every mtr after recovery starts at or beyond the recovered LSN, above the
    oldest_modification of every recovered page).  A frame's key must not change while it is
    in the list (``oldest_modification`` is set before insertion and cleared after removal).
    """

    __slots__ = ("_appended", "_recovered")

    def __init__(self) -> None:
        self._recovered: SortedKeyList = SortedKeyList(key=_flush_key)
        self._appended: OrderedDict[Frame, None] = OrderedDict()

    def append(self, f: Frame) -> None:
        """Add ``f`` at the tail (buf_flush_insert_into_flush_list).  O(1).  The caller
        guarantees ``f`` sorts after every frame in the list (class docstring)."""
        self._appended[f] = None

    def insert_sorted(self, f: Frame) -> None:
        """Add a recovered ``f`` at its place by ``_flush_key``
        (buf_flush_insert_sorted_into_flush_list).  O(log n).  Recovery calls it before any
        frame is appended (class docstring)."""
        self._recovered.add(f)

    def remove(self, f: Frame) -> None:
        """Take ``f`` out of the list: O(1) from the appended run, O(log n) from the recovered
        run.

        Raises:
            ValueError: ``f`` is not in the list.
        """
        if f in self._appended:
            del self._appended[f]
        else:
            self._recovered.remove(f)

    def first(self) -> Frame | None:
        """The head (the smallest oldest_modification), or None when the list is empty.  O(1)."""
        if self._recovered:
            return self._recovered[0]
        return next(iter(self._appended), None)

    def __iter__(self) -> Iterator[Frame]:
        """Oldest first; the list must not change during the iteration."""
        return chain(self._recovered, self._appended)

    def __len__(self) -> int:
        return len(self._recovered) + len(self._appended)

    def __contains__(self, f: Frame) -> bool:
        return f in self._appended or f in self._recovered

    def __repr__(self) -> str:
        return f"FlushList({len(self._recovered)} recovered, {len(self._appended)} appended)"

    def _check(self) -> None:
        """Assert that the list is strictly ordered by ``_flush_key``, across both runs."""
        self._recovered._check()
        keys = [_flush_key(f) for f in self]
        assert all(a < b for a, b in pairwise(keys)), \
            "flush list out of oldest_modification order"
        assert all(f.oldest_modification > 0 for f in self)


class BufferPool:
    """Args: ``fil`` (tablespaces), ``log`` (:class:`~engine.log.LogSys`), ``dblwr`` (a
    :class:`~engine.dblwr.Doublewrite` or None when disabled), ``capacity`` (pages),
    ``owner`` (the engine, or anything with ``panicked``: once it is set no page is written,
    since a frame may hold changes a failed mtr made and never logged), ``watchdog`` (page
    accesses allowed, None for no limit: see :class:`~engine.errors.WatchdogExpired`)."""

    def __init__(self, fil, log, dblwr, capacity: int, page_size: int, stats,
                 owner=None, watchdog: int | None = None) -> None:
        self.owner = owner
        self.accesses = 0               # page accesses (hits and misses), for the watchdog
        self.watchdog = watchdog if watchdog is not None else sys.maxsize
        self.fil = fil
        self.log = log
        self.dblwr = dblwr
        self.capacity = capacity
        self.page_size = page_size
        self.frames: OrderedDict[tuple[int, int], Frame] = OrderedDict()   # LRU order
        self.flush_list = FlushList()
        self.stats = stats

    # -- access ----------------------------------------------------------------------------------
    def get(self, space: int, page_no: int) -> Frame:
        """The frame of page ``space:page_no``, read and verified on a miss.  O(1) on a hit.

        Raises:
            TornPageUnrepairable: the page on disk is torn.
            PageFromFuture: its LSN is newer than the log (a WAL violation).
            Corruption: bad checksum, an all-zero/short page that should exist, or a valid
                page of another page number (misplaced by a misdirected write).
            BufferPoolFull: a miss with every frame fixed.
            WatchdogExpired: more accesses than the watchdog allows (a hang).
        """
        key = (space, page_no)
        self.accesses += 1
        if self.accesses > self.watchdog:
            raise WatchdogExpired(self.watchdog, key)
        f = self.frames.get(key)
        if f is not None:
            self.frames.move_to_end(key)
            return f
        raw = self.fil.space(space).read_page(page_no)
        v = self._verify_read(raw, key)
        if v != PAGE_OK:
            msg = f"page {space}:{page_no} read from disk is {v}"
            if v == PAGE_TORN:
                raise TornPageUnrepairable(msg)
            if v == PAGE_FROM_FUTURE:
                raise PageFromFuture(msg + f" (page LSN {fil_page.page_lsn(raw)} > log end "
                                           f"{self.log.end_lsn})")
            raise Corruption(msg)
        self.stats["buf_pages_read"] += 1
        return self._install(Frame(space, page_no, bytearray(raw)))

    page = get     # the read-only source interface shared with Mtr.page

    def _verify_read(self, raw: bytes, where: tuple[int, int]) -> str:
        """Verify a page read from disk at ``where`` (space id, page number)
        (buf_page_io_complete; mutant ``no-checksum-on-read`` accepts every page)."""
        return fil_page.verify(raw, self.page_size, self.log.end_lsn, expect=where)

    def create(self, space: int, page_no: int) -> Frame:
        """A frame for a page that is about to be initialised by redo (no read)."""
        key = (space, page_no)
        f = self.frames.get(key)
        if f is not None:
            self.frames.move_to_end(key)
            return f
        self.stats["buf_pages_created"] += 1
        return self._install(Frame(space, page_no, bytearray(self.page_size)))

    def install_recovered(self, space: int, page_no: int, data: bytearray, oldest: int,
                          newest: int) -> None:
        """Put a page that recovery applied redo to into the pool, dirty, at its place in the
        flush list by oldest_modification (an O(log n) sorted insert: redo apply reaches pages
        in page order, not LSN order)."""
        assert (space, page_no) not in self.frames
        f = self._install(Frame(space, page_no, data))
        f.oldest_modification = oldest
        f.newest_modification = newest
        self.flush_list.insert_sorted(f)

    def _install(self, f: Frame) -> Frame:
        while len(self.frames) >= self.capacity:
            self._evict_one()
        self.frames[f.key] = f
        return f

    def _evict_one(self) -> None:
        for key, f in self.frames.items():
            if f.fix_count == 0:
                if f.oldest_modification:
                    self.stats["buf_lru_single_page_flushes"] += 1
                    self._write([f], single=True)
                del self.frames[key]
                self.stats["buf_lru_evictions"] += 1
                return
        raise BufferPoolFull(f"buffer pool of {self.capacity} pages: every frame is fixed")

    def discard_space(self, space: int) -> int:
        """Drop every frame of ``space`` (a dropped table's), dirty ones unwritten
        (buf_LRU_flush_or_remove_pages with BUF_REMOVE_ALL_NO_WRITE); returns how many.  The
        caller made the drop durable in the log first."""
        gone = [f for f in self.frames.values() if f.space == space]
        for f in gone:
            assert f.fix_count == 0, f
            if f.oldest_modification:
                self.flush_list.remove(f)
                f.oldest_modification = 0
            del self.frames[f.key]
        self.stats["buf_pages_discarded"] += len(gone)
        return len(gone)

    # -- modification ----------------------------------------------------------------------------
    def note_modification(self, f: Frame, start_lsn: int, end_lsn: int) -> None:
        """Record that an mtr [start_lsn, end_lsn) changed ``f`` (buf_flush_note_modification).

        A page that becomes dirty is appended to the flush list in O(1): mtrs commit in LSN
        order and hand their pages over in page order (Mtr.commit), so the tail is the right
        place.  A page already dirty keeps its place and its oldest_modification."""
        assert f.fix_count > 0 and end_lsn > f.newest_modification
        fil_page.put_u64(f.data, fil_page.FIL_PAGE_LSN, end_lsn)
        f.newest_modification = end_lsn
        if f.oldest_modification == 0:
            f.oldest_modification = start_lsn
            self.flush_list.append(f)

    # -- flushing ---------------------------------------------------------------------------------
    def oldest_modification(self) -> int:
        """The flush list head's oldest_modification, or 0 when nothing is dirty.  O(1)."""
        head = self.flush_list.first()
        return head.oldest_modification if head is not None else 0

    def flush_batch(self, n: int) -> int:
        """Flush up to ``n`` unfixed pages from the flush-list head (at most a doublewrite
        segment's worth, with the doublewrite buffer); return how many."""
        if self.dblwr is not None:
            n = min(n, self.dblwr.segment_pages)
        batch = []
        for f in self.flush_list:
            if f.fix_count == 0:
                batch.append(f)
                if len(batch) == n:
                    break
        if batch:
            self._write(batch, single=False)
        return len(batch)

    def flush_all(self) -> None:
        """Flush every dirty page.

        Raises:
            BufferPoolFull: every dirty page left is fixed by an open mtr (so none can be
                flushed: a caller that checkpoints with an mtr open).
        """
        step = self.dblwr.segment_pages if self.dblwr else 64
        while self.flush_list:
            if self.flush_batch(step) == 0:
                raise BufferPoolFull(f"{len(self.flush_list)} dirty pages are all fixed by "
                                     f"an open mtr: none can be flushed")

    def _write(self, frames: list[Frame], single: bool) -> None:
        """Write ``frames`` through the WAL rule and the doublewrite buffer, then fsync them
        (without the doublewrite buffer the next checkpoint fsyncs them).

        Raises:
            EnginePanic: the engine has stopped (nothing is written).
        """
        if self.owner is not None and self.owner.panicked:
            raise EnginePanic(f"no page is written after the engine stopped: "
                              f"{self.owner.panicked}")
        newest = max(f.newest_modification for f in frames)
        self._log_durable_up_to(newest)                   # the WAL rule
        images = [fil_page.stamp_for_write(f.data, f.newest_modification) for f in frames]
        if self.dblwr is not None:
            if single:
                self.dblwr.write_single(images[0])
            else:
                self.dblwr.write_batch(images)
        for f, img in zip(frames, images):
            self.fil.space(f.space).write_pages(f.page_no, img)
        if self.dblwr is not None:
            # the area is reused by the next batch only after the in-place writes are durable
            # (buf_dblwr_sync_datafiles); without the doublewrite buffer the writes stay in the
            # file system's cache until the next checkpoint fsyncs the data files
            # (log_checkpoint → fil_flush_file_spaces), as in InnoDB with innodb_doublewrite=0
            self.fil.fsync_all()
        for f in frames:
            self.flush_list.remove(f)
            f.oldest_modification = 0
        self.stats["buf_pages_written"] += len(frames)

    def _log_durable_up_to(self, lsn: int) -> None:
        """The WAL rule before a page write: the log is durable up to the newest modification
        of the pages about to be written (mutant ``page-write-before-log-durable`` skips it)."""
        self.log.write_up_to(lsn, flush=True)

    def _check(self) -> None:
        assert len(self.frames) <= self.capacity
        dirty = [f for f in self.frames.values() if f.oldest_modification]
        assert len(dirty) == len(self.flush_list), (len(dirty), len(self.flush_list))
        self.flush_list._check()
        for f in dirty:
            assert f in self.flush_list
            assert f.oldest_modification <= f.newest_modification
            assert fil_page.page_lsn(f.data) == f.newest_modification, f
