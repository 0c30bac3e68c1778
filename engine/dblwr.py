"""The doublewrite buffer (buf/buf0dblwr.cc): torn-page protection for data file writes.

The area is ``n_pages`` contiguous pages of the system tablespace: ``batch_pages`` slots for
page-cleaner batches, then ``DBLWR_SINGLE_SLOTS`` slots for single-page flushes (LRU eviction).
As in InnoDB 8.0.20+ (``Double_write``'s segment queues), the batch slots are divided into
segments of ``segment_pages`` slots, and a batch takes the segment after the previous batch's,
in turn; a single-page flush takes the single-page slot after the previous one's, in turn.  So
the area keeps older copies of a page beside, and before, its newest copy, as the doublewrite
files of a real server do.

Write protocol (the invariant recovery relies on): a batch is copied into its segment and
written; the system tablespace is fsynced (:meth:`Doublewrite._sync_area`); only then are the
pages written in place, and the data files fsynced before the segment is used again.  So
whenever an in-place write can be torn, its copy is durable.

Recovery (buf_dblwr_process, after the redo scan and before redo apply): every copy in the area
that is itself valid and whose LSN lies in [checkpoint LSN, scanned log end] is a candidate; per
page the copy with the highest LSN wins (MDEV-11799: never the first one found).  If the page in
the data file is valid it is kept (redo brings it forward); if it is torn, fails its checksum or
is all zero, the copy is written in place.  A torn copy is never used.
"""
from __future__ import annotations

from tornpage.engine import page as fil_page
from tornpage.engine.page import PAGE_OK, PAGE_ZERO, page_lsn, page_no, page_space
from tornpage.engine.trx_sys import DBLWR_SINGLE_SLOTS


class Doublewrite:
    """Args: ``sys_space`` (the system :class:`~engine.fil.Tablespace`), ``first_page`` and
    ``n_pages`` (the area, pages: batch slots, then ``DBLWR_SINGLE_SLOTS`` single-page slots),
    ``page_size`` (bytes), ``segment_pages`` (slots per batch segment, the largest batch
    :meth:`write_batch` takes; more than the batch slots is taken as all of them).  The last
    ``batch_pages % segment_pages`` batch slots are never used."""

    def __init__(self, sys_space, first_page: int, n_pages: int, page_size: int,
                 segment_pages: int) -> None:
        assert n_pages > DBLWR_SINGLE_SLOTS
        self.space = sys_space
        self.first_page = first_page
        self.n_pages = n_pages
        self.page_size = page_size
        self.batch_pages = n_pages - DBLWR_SINGLE_SLOTS
        self.segment_pages = min(segment_pages, self.batch_pages)
        self.n_segments = self.batch_pages // self.segment_pages
        self._next_segment = 0      # the segment queue's head (8.0.20+: s_*_batch_segments)
        self._next_single = 0       # the single-page slot queue's head (s_single_segments)
        self.stats = {"dblwr_batches": 0, "dblwr_single": 0, "dblwr_pages_written": 0}

    def _sync_area(self) -> None:
        """fsync the area before any in-place write of its pages (mutant 6 removes this)."""
        self.space.fsync()

    def write_batch(self, images: list[bytes]) -> None:
        """Copy ``images`` (stamped page images, at most ``segment_pages``) into the next batch
        segment and make them durable."""
        assert 1 <= len(images) <= self.segment_pages
        seg = self._next_segment
        self._next_segment = (seg + 1) % self.n_segments
        self.space.write_pages(self.first_page + seg * self.segment_pages, b"".join(images))
        self._sync_area()
        self.stats["dblwr_batches"] += 1
        self.stats["dblwr_pages_written"] += len(images)

    def write_single(self, image: bytes) -> None:
        """Copy one page into the next single-page slot and make it durable."""
        slot = self._next_single
        self._next_single = (slot + 1) % DBLWR_SINGLE_SLOTS
        self.space.write_pages(self.first_page + self.batch_pages + slot, image)
        self._sync_area()
        self.stats["dblwr_single"] += 1
        self.stats["dblwr_pages_written"] += 1

    def _check(self) -> None:
        assert self.n_pages == self.batch_pages + DBLWR_SINGLE_SLOTS
        assert 1 <= self.segment_pages <= self.batch_pages
        assert self.n_segments * self.segment_pages <= self.batch_pages
        assert 0 <= self._next_segment < self.n_segments
        assert 0 <= self._next_single < DBLWR_SINGLE_SLOTS

    def _pick_copies(self, checkpoint_lsn: int, scanned_lsn: int) -> dict[tuple[int, int], bytes]:
        """(space, page) → the copy recovery may restore it from: of the copies in the area that
        are valid and whose LSN lies in [checkpoint LSN, scanned log end], the one with the
        highest LSN (mutants ``dblwr-first-copy-any-lsn`` and ``dblwr-copy-not-verified`` pick
        otherwise)."""
        best: dict[tuple[int, int], bytes] = {}
        for i in range(self.n_pages):
            img = self.space.read_page(self.first_page + i)
            if fil_page.verify(img, self.page_size) != PAGE_OK:
                continue        # an empty slot, or a copy torn while being written: never used
            lsn = page_lsn(img)
            if lsn == 0 or not checkpoint_lsn <= lsn <= scanned_lsn:
                continue        # outside the window: that write completed before the checkpoint
            key = (page_space(img), page_no(img))
            if key not in best or page_lsn(best[key]) < lsn:
                best[key] = img
        return best

    def recover(self, fil, checkpoint_lsn: int, scanned_lsn: int, stats) -> list[tuple[int, int]]:
        """Restore torn or zeroed data pages from valid copies; return the (space, page) pairs
        restored.  Data files written to are fsynced before returning."""
        best = self._pick_copies(checkpoint_lsn, scanned_lsn)
        restored = []
        for key in sorted(best):
            space_id, pno = key
            if space_id not in fil.spaces:
                stats["recv_dblwr_copy_for_unknown_space"] += 1
                continue
            ts = fil.space(space_id)
            cur = ts.read_page(pno)
            v = fil_page.verify(cur, self.page_size, expect=key)
            if v == PAGE_OK:
                stats["recv_dblwr_page_valid_kept"] += 1
                continue
            assert v != PAGE_OK
            ts.write_pages(pno, best[key])
            restored.append(key)
            stats["recv_dblwr_pages_restored"] += 1
            if v == PAGE_ZERO:
                stats["recv_dblwr_zero_pages_restored"] += 1
        fil.fsync_all()
        return restored
