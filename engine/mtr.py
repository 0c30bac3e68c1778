"""Mini-transactions (mtr/mtr0mtr.cc): the unit of atomic page change.

An mtr fixes the pages it touches, changes them only by building redo records and applying
them (so the change made and the change logged are the same bytes), and at commit appends its
records to the log as one group, stamps every changed page with the group's end LSN and puts
it on the flush list (appended at its tail, in page order).  Recovery applies a group all or
nothing.

An exception inside an mtr, or inside its commit (LogFull from the log writer's guard, any
failure while stamping pages), leaves pages changed but unlogged; the engine then stops (it
"panics", as InnoDB asserts): every later call raises EnginePanic and the buffer pool writes no
page, so no page the log cannot explain reaches disk.  Either way the mtr's pages are unfixed.
An exception before the mtr changed anything (a lock conflict, a full rollback segment) leaves
nothing to explain and the engine carries on.
"""
from __future__ import annotations

from tornpage.engine import mtr_log
from tornpage.engine.mtr_log import RedoRecord


class Mtr:
    def __init__(self, engine) -> None:
        self.engine = engine
        self.buf = engine.buf
        self.page_size = engine.config.page_size
        self.records: list[RedoRecord] = []
        self.modified: dict[tuple[int, int], object] = {}
        self.fixed: list = []
        self.start_lsn = 0
        self.end_lsn = 0

    def __enter__(self) -> "Mtr":
        return self

    def __exit__(self, et, ev, tb) -> bool:
        if et is None:
            self.commit()
        else:
            if self.records:
                self.engine._panic(f"mtr failed after changing pages: {et.__name__}: {ev}")
            self._release()
        return False

    def page(self, space: int, page_no: int):
        """Fix and return the frame of an existing page (see BufferPool.get for errors)."""
        f = self.buf.get(space, page_no)
        f.fix_count += 1
        self.fixed.append(f)
        return f

    def new_page(self, space: int, page_no: int, ptype: int, level: int = 0, index_id: int = 0):
        """Fix a frame for ``space:page_no`` and re-create it with an MLOG_PAGE_INIT record."""
        f = self.buf.create(space, page_no)
        f.fix_count += 1
        self.fixed.append(f)
        self.log(f, mtr_log.page_init(space, page_no, ptype, level, index_id))
        return f

    def log(self, frame, rec: RedoRecord) -> None:
        """Apply ``rec`` to ``frame`` and remember it for the log."""
        assert frame.fix_count > 0 and (frame.space, frame.page_no) == (rec.space, rec.page_no)
        mtr_log.apply(frame.data, rec, self.page_size)
        self.records.append(rec)
        self.modified[frame.key] = frame

    def log_file_op(self, rec: RedoRecord) -> None:
        """A file-level record (MLOG_FILE_CREATE / RENAME / DELETE) in this mtr: it changes no
        page; the caller performs the file operation once the mtr is durable."""
        assert rec.type in mtr_log.FILE_RECORD_TYPES
        self.records.append(rec)

    def write(self, frame, offset: int, data: bytes) -> None:
        """MLOG_WRITE_STRING: ``data`` at byte ``offset`` of the page."""
        self.log(frame, mtr_log.write_string(frame.space, frame.page_no, offset, data))

    def commit(self) -> None:
        """Append the records to the log as one group, stamp every changed page with its end
        LSN and put it on the flush list, then unfix the pages (mtr_commit).  The group starts
        with MLOG_FILE_NAME for each table space it changes that the log has not named since
        the last checkpoint (engine.fil).

        Raises:
            LogFull: the group would overwrite redo newer than the last checkpoint.
            Whatever else fails while committing.  After any failure with records the
            engine has stopped (module docstring) and the pages are unfixed.
        """
        try:
            if self.records:
                fil = self.engine.fil
                spaces = {space for space, _ in self.modified}
                named_here = {r.space for r in self.records
                              if r.type in mtr_log.FILE_RECORD_TYPES}
                recs = fil.name_records(spaces - named_here) + self.records
                self.start_lsn, self.end_lsn = self.engine.log.append(mtr_log.encode_mtr(recs))
                fil.note_changed(spaces | named_here, self.end_lsn)
                # in page order: the pages share the mtr's start LSN as oldest_modification,
                # and the flush list, which they join at its tail, orders ties by page
                for key in sorted(self.modified):
                    self.buf.note_modification(self.modified[key], self.start_lsn,
                                               self.end_lsn)
                stats = self.engine.stats
                stats["mtr_committed"] += 1
                stats["redo_records_written"] += len(recs)
                every = self.engine.config.log_flush_every_mtrs
                if every and stats["mtr_committed"] % every == 0:
                    # a concurrent commit's log flush: this mtr boundary becomes durable
                    self.engine.log.write_up_to(self.end_lsn)
                    stats["log_flushes_at_mtr_boundary"] += 1
        except BaseException as e:
            if self.records:
                self.engine._panic(f"mtr commit failed after changing pages: "
                                   f"{type(e).__name__}: {e}")
            raise
        finally:
            self._release()

    def _release(self) -> None:
        for f in self.fixed:
            f.fix_count -= 1
            assert f.fix_count >= 0
        self.fixed.clear()
