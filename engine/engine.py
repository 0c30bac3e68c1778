"""The engine's public face: create or open a database, run transactions, background work.

    eng = Engine.create(vfs, EngineConfig(page_size=4096))
    eng.create_table("sbtest1")
    trx = eng.begin(); trx.put("sbtest1", 1, b"row"); trx.commit()
    eng.run_background(4)          # page cleaner, checkpoint, background rollback, purge
    eng.close()
    eng = Engine.open(vfs, config)   # crash recovery runs here

Everything the engine does to the disk goes through the VFS protocol.  Background work never
runs by itself: the caller steps it (``run_background``), so the same calls give the same IO
trace, byte for byte.

The engine raises typed errors (engine.errors) and never returns data it could not verify.  After
an internal failure inside an mtr it refuses all further work (``EnginePanic``).
"""
from __future__ import annotations

from collections import Counter

from tornpage.engine import btr, btr_page as bp, fsp, read_view, row, trx_sys, undo
from tornpage.engine.buf import BufferPool
from tornpage.engine.config import PAGE_SIZES, ConfigMismatch, EngineConfig
from tornpage.engine.dblwr import Doublewrite
from tornpage.engine.errors import (Corruption, DuplicateKey, EngineError, EnginePanic,
                                   RecoveryError, TrxStateError)
from tornpage.engine.fil import IBD_SUFFIX, LOG_FILE, SYS_FILE, Fil
from tornpage.engine.log import LOG_START_LSN, LogSys
from tornpage.engine.mtr import Mtr
from tornpage.engine import mtr_log
from tornpage.engine.mtr_log import MLOG_FILE_CREATE, MLOG_FILE_DELETE, MLOG_FILE_RENAME
from tornpage.engine import page as fil_page
from tornpage.engine.page import (PAGE_OK, FIL_PAGE_INDEX, FIL_PAGE_TYPE_DICT_HDR, FIL_PAGE_TYPE_FSP_HDR,
                         FIL_PAGE_TYPE_RSEG, FIL_PAGE_TYPE_TRX_SYS)
from tornpage.engine.os_file import GuardedVFS
from tornpage.engine.page import FIL_NULL
from tornpage.engine.purge import PurgeSys
from tornpage.engine.trx import ACTIVE, PREPARED, Trx, TrxSys

INDEX_ROOT_PAGE_NO = 1      # the clustered index root of a file-per-table tablespace
SEC_INDEX_ROOT_PAGE_NO = 2  # the secondary index (on k) root, when the table has one


class Engine:
    """An InnoDB-style storage engine over a VFS.  Build one with :meth:`create` or
    :meth:`open`; the constructor only wires the parts."""

    def __init__(self, vfs, config: EngineConfig) -> None:
        self.vfs = GuardedVFS(vfs, self)
        self.config = config
        self.stats: Counter = Counter()
        self.fil = Fil(self.vfs, config.page_size)
        self.log: LogSys | None = None
        self.dblwr: Doublewrite | None = None
        self.buf: BufferPool | None = None
        self.trx_sys = TrxSys(self)
        self.tables: dict[str, btr.Index] = {}
        self._by_space: dict[int, btr.Index] = {}
        self._sec_by_space: dict[int, btr.Index] = {}
        self.purge = PurgeSys(self)
        self.panicked: str | None = None
        self.recovered_lsn = 0
        self._bg_step = 0
        self._marker_end = 0     # end LSN of the last checkpoint's MLOG_CHECKPOINT mtr
        self.closed = False

    # -- wiring -----------------------------------------------------------------------------------
    def _dblwr_pages(self) -> int:
        return trx_sys.dblwr_area_pages(self.config.doublewrite_batch_pages)

    def _open_files(self, create: bool) -> None:
        self.fil.open_space(0, SYS_FILE, create=create)
        self.log = LogSys(self.vfs.open(LOG_FILE, create=create), self.config.log_file_size,
                          self.stats, start_lsn=self.config.initial_lsn if create
                          else LOG_START_LSN)   # an opened log: placed by its checkpoint

    def _open_pool(self, dblwr_first: int, dblwr_pages: int) -> None:
        """The doublewrite buffer (at the area given, when enabled) and the buffer pool."""
        cfg = self.config
        if cfg.doublewrite:
            self.dblwr = Doublewrite(self.fil.space(0), dblwr_first, dblwr_pages, cfg.page_size,
                                     segment_pages=cfg.page_cleaner_batch)
        self.buf = BufferPool(self.fil, self.log, self.dblwr, cfg.buffer_pool_pages,
                              cfg.page_size, self.stats, owner=self,
                              watchdog=cfg.watchdog_page_accesses)

    def mtr(self) -> Mtr:
        """Start a mini-transaction (after a log free check, as mtr_start + log_free_check)."""
        if self.panicked:
            raise EnginePanic(self.panicked)
        self._log_free_check()
        return Mtr(self)

    def _panic(self, why: str) -> None:
        """Stop the engine (the first reason is kept): every later call raises EnginePanic and
        the buffer pool writes no page, so no change the log cannot explain reaches disk."""
        if self.panicked is None:
            self.panicked = why

    def _log_free_check(self) -> None:
        """If the log is close to overwriting redo newer than the checkpoint, flush the buffer
        pool and checkpoint synchronously (log_free_check; bug 12 skips this)."""
        if self.log.free_space() < self.config.log_free_check_margin:
            self.stats["log_sync_checkpoints"] += 1
            self.buf.flush_all()
            self.make_checkpoint()

    # -- creation ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, vfs, config: EngineConfig | None = None) -> "Engine":
        """Create a new database in an empty VFS; durable when this returns.

        Raises:
            RecoveryError: the VFS already holds a database.
        """
        config = config or EngineConfig()
        if vfs.exists(SYS_FILE) or vfs.exists(LOG_FILE):
            raise RecoveryError("the VFS already holds a database; use Engine.open")
        eng = cls(vfs, config)
        eng._open_files(create=True)
        eng._open_pool(trx_sys.doublewrite_first_page(config.n_rollback_segments),
                       eng._dblwr_pages())
        eng.log.create()
        eng.log.file.fsync()
        ps = config.page_size
        R = config.n_rollback_segments
        first_free = trx_sys.first_free_page(R, eng._dblwr_pages())
        # TRX_SYS_TRX_ID_STORE must stay above every id handed out: ids below the first
        # multiple of the write margin at or after the first id go unpersisted, and at that
        # multiple TrxSys._new_id persists the next store before handing it out
        margin = trx_sys.TRX_SYS_TRX_ID_WRITE_MARGIN
        first_trx_id = config.initial_trx_id + margin
        trx_id_store = -(-first_trx_id // margin) * margin
        with eng.mtr() as m:
            f0 = m.new_page(0, 0, FIL_PAGE_TYPE_FSP_HDR)
            m.write(f0, fsp.FSP_SPACE_ID, fsp.header_bytes(0, ps, first_free, first_free))
            bitmap = bytearray((first_free + 7) // 8)
            for p in range(first_free):
                bitmap[p // 8] |= 1 << (p % 8)
            m.write(f0, fsp.FSP_BITMAP, bytes(bitmap))
            ts = m.new_page(0, trx_sys.TRX_SYS_PAGE_NO, FIL_PAGE_TYPE_TRX_SYS)
            m.write(ts, trx_sys.TRX_SYS_TRX_ID_STORE,
                    trx_id_store.to_bytes(8, "big") +
                    R.to_bytes(4, "big") +
                    trx_sys.doublewrite_header(trx_sys.doublewrite_first_page(R),
                                               eng._dblwr_pages()) +
                    b"".join((trx_sys.FIRST_RSEG_PAGE_NO + i).to_bytes(4, "big")
                             for i in range(R)))
            d = m.new_page(0, trx_sys.DICT_HDR_PAGE_NO, FIL_PAGE_TYPE_DICT_HDR)
            m.write(d, trx_sys.DICT_HDR_N_TABLES, trx_sys.encode_dict([]))
            for i in range(R):
                m.new_page(0, trx_sys.FIRST_RSEG_PAGE_NO + i, FIL_PAGE_TYPE_RSEG)
        eng.trx_sys.max_trx_id = first_trx_id
        eng.buf.flush_all()
        eng.make_checkpoint()
        vfs.fsync_dir("")
        return eng

    def create_table(self, name: str, k_index: bool = False) -> None:
        """CREATE TABLE ``name`` in its own tablespace ``<name>.ibd``, atomic and durable on
        return by redo alone: one mtr logs MLOG_FILE_CREATE, initialises the new space's pages
        and adds the table to the dictionary; the file is created only once that mtr is durable
        (as fil_ibd_create logs before it creates), and recovery creates it again if the crash
        came first.  With ``k_index`` the table gets a non-unique secondary index on ``k``, the
        first 4 bytes of every value (a big-endian u32, as sysbench's ``k`` column); its values
        must then be at least 4 bytes and its keys below 2**32.  Space ids are never reused
        (DICT_HDR_MAX_SPACE_ID).

        Raises:
            EngineError: the table exists, a file of that name exists (an orphan), or the name
                is not a plain identifier of at most 64 bytes (UTF-8).
        """
        self._usable()
        self._check_table_name(name)
        if name in self.tables:
            raise EngineError(f"table {name} exists")
        path = name + IBD_SUFFIX
        if self.vfs.exists(path):
            raise EngineError(f"{path} exists but no table {name} does (an orphan tablespace "
                              f"file: remove it first)")
        ps = self.config.page_size
        sec_root = SEC_INDEX_ROOT_PAGE_NO if k_index else FIL_NULL
        first_free = INDEX_ROOT_PAGE_NO + 1 + bool(k_index)
        with self.mtr() as m:
            d = m.page(0, trx_sys.DICT_HDR_PAGE_NO)
            space = trx_sys.max_space_id(d.data) + 1
            m.log_file_op(mtr_log.file_record(MLOG_FILE_CREATE, space, path))
            f0 = m.new_page(space, 0, FIL_PAGE_TYPE_FSP_HDR)
            m.write(f0, fsp.FSP_SPACE_ID, fsp.header_bytes(space, ps, first_free, first_free))
            m.write(f0, fsp.FSP_BITMAP, bytes([(1 << first_free) - 1]))
            m.new_page(space, INDEX_ROOT_PAGE_NO, FIL_PAGE_INDEX, 0, space)
            if k_index:
                m.new_page(space, sec_root, FIL_PAGE_INDEX, 0, space | bp.SECONDARY_INDEX_FLAG)
            tables = trx_sys.decode_dict(d.data) + [(name, space, INDEX_ROOT_PAGE_NO, sec_root)]
            m.write(d, trx_sys.DICT_HDR_N_TABLES, trx_sys.encode_dict(tables, space))
        self._ddl_log_durable(m.end_lsn)
        self.fil.open_space(space, path, create=True)
        self._sync_dir()
        self._add_index(name, space, INDEX_ROOT_PAGE_NO, sec_root)
        self.stats["ddl_create_table"] += 1

    def drop_table(self, name: str) -> None:
        """DROP TABLE ``name``: one mtr removes it from the dictionary and logs MLOG_FILE_DELETE;
        once that is durable the table's pages leave the buffer pool unwritten and its file is
        unlinked (recovery unlinks it if the crash came first, and discards the redo of the
        dropped space: bug 19).  Durable on return.

        Raises:
            EngineError: no such table, or a transaction holds a lock on it (an active or
                prepared transaction changed it; rolled back or committed, it lets go).
        """
        self._usable()
        idx = self._index(name)
        space = idx.space
        if any(s == space for s, _ in self.trx_sys.lock_sys.locks):
            raise EngineError(f"table {name} is in use: a transaction holds a lock on it")
        path = self.fil.space(space).path
        with self.mtr() as m:
            d = m.page(0, trx_sys.DICT_HDR_PAGE_NO)
            tables = [t for t in trx_sys.decode_dict(d.data) if t[1] != space]
            m.log_file_op(mtr_log.file_record(MLOG_FILE_DELETE, space, path))
            m.write(d, trx_sys.DICT_HDR_N_TABLES,
                    trx_sys.encode_dict(tables, trx_sys.max_space_id(d.data)))
        self._ddl_log_durable(m.end_lsn)
        self.buf.discard_space(space)
        self.fil.close_space(space)
        del self.tables[name]
        del self._by_space[space]
        self._sec_by_space.pop(space, None)
        self.vfs.unlink(path)
        self._sync_dir()
        self.stats["ddl_drop_table"] += 1

    def rename_table(self, old: str, new: str) -> None:
        """RENAME TABLE ``old`` TO ``new``: one mtr renames it in the dictionary and logs
        MLOG_FILE_RENAME; once that is durable the file is renamed and the directory synced
        (recovery renames it if the crash came first).  Durable on return.

        Raises:
            EngineError: no table ``old``; ``new`` exists, names an existing file or is not a
                plain identifier of at most 64 bytes.
        """
        self._usable()
        idx = self._index(old)
        self._check_table_name(new)
        if new in self.tables:
            raise EngineError(f"table {new} exists")
        space = idx.space
        src, dst = self.fil.space(space).path, new + IBD_SUFFIX
        if self.vfs.exists(dst):
            raise EngineError(f"{dst} exists but no table {new} does (an orphan tablespace "
                              f"file: remove it first)")
        with self.mtr() as m:
            d = m.page(0, trx_sys.DICT_HDR_PAGE_NO)
            tables = [(new if t[1] == space else t[0],) + tuple(t[1:])
                      for t in trx_sys.decode_dict(d.data)]
            m.log_file_op(mtr_log.file_record(MLOG_FILE_RENAME, space, src, dst))
            m.write(d, trx_sys.DICT_HDR_N_TABLES,
                    trx_sys.encode_dict(tables, trx_sys.max_space_id(d.data)))
        self._ddl_log_durable(m.end_lsn)
        self.vfs.rename(src, dst)
        self._sync_dir()
        self.fil.space(space).path = dst
        sec = self._sec_by_space.get(space)
        del self.tables[old], self._by_space[space]
        self._sec_by_space.pop(space, None)
        self._add_index(new, space, idx.root, sec.root if sec is not None else FIL_NULL)
        self.stats["ddl_rename_table"] += 1

    @staticmethod
    def _check_table_name(name: str) -> None:
        if not isinstance(name, str) or not name.isidentifier() or len(name.encode()) > 64:
            raise EngineError(f"bad table name {name!r}")

    def _ddl_log_durable(self, lsn: int) -> None:
        """A DDL mtr's redo is made durable before its file operation (the log is the DDL's
        commit)."""
        self.log.write_up_to(lsn, flush=True)

    def _sync_dir(self) -> None:
        """fsync the directory so a new tablespace file's name is durable (mutant
        ``no-dir-fsync-on-create`` skips this)."""
        self.vfs.fsync_dir("")

    def _add_index(self, name: str, space: int, root: int, sec_root: int) -> None:
        idx = btr.Index(name, space, root, space)
        self.tables[name] = idx
        self._by_space[space] = idx
        if sec_root != FIL_NULL:
            self._sec_by_space[space] = btr.Index(name + ".k", space, sec_root,
                                                  space | bp.SECONDARY_INDEX_FLAG)

    def index_by_space(self, space: int) -> btr.Index:
        return self._by_space[space]

    def sec_index_by_space(self, space: int) -> btr.Index | None:
        """The table's secondary index on k, or None."""
        return self._sec_by_space.get(space)

    # -- opening (recovery) -----------------------------------------------------------------------
    @classmethod
    def open(cls, vfs, config: EngineConfig | None = None) -> "Engine":
        """Open an existing database, running crash recovery (engine.recovery).

        The database opens by what is on disk: the page size from the system tablespace, the
        doublewrite area from its header on TRX_SYS, the rollback segment count from TRX_SYS
        (read again after redo apply, before transactions are resurrected from the rollback
        segments).  A configuration that disagrees is refused, never followed.

        Raises:
            ConfigMismatch: page_size, n_rollback_segments, doublewrite_batch_pages or
                log_file_size differs from what is on disk (also a RecoveryError).
            RecoveryError: files missing, no valid checkpoint, a log that ends before its
                checkpoint, unparseable redo, or no page that tells the page size.
            TornPageUnrepairable, PageFromFuture, Corruption: pages that cannot be trusted.
        """
        from tornpage.engine import recovery
        config = config or EngineConfig()
        for f in (SYS_FILE, LOG_FILE):
            if not vfs.exists(f):
                raise RecoveryError(f"{f} is missing: not a database (or its creation was lost)")
        eng = cls(vfs, config)
        eng._open_files(create=False)
        ps = eng._page_size_on_disk()
        if ps != config.page_size:
            raise ConfigMismatch("page_size", config.page_size, ps, f"{SYS_FILE}")
        eng._open_pool(*eng._dblwr_area_on_disk())
        if eng.log.file.size() != config.log_file_size:
            raise ConfigMismatch("log_file_size", config.log_file_size, eng.log.file.size(),
                                 f"the size of {LOG_FILE}")
        recovery.recover(eng)
        f0 = eng.buf.get(0, 0)
        if fil_page.u32(f0.data, fsp.FSP_PAGE_SIZE) != config.page_size:
            raise Corruption(f"{SYS_FILE}: the recovered FSP header says page size "
                             f"{fil_page.u32(f0.data, fsp.FSP_PAGE_SIZE)}, its pages are "
                             f"{config.page_size} bytes")
        return eng

    def _page_size_on_disk(self) -> int:
        """The page size of the system tablespace, read raw before recovery: the size page 0's
        FSP header names, if page 0 verifies at that size; else the first size at which a page
        among the system tablespace's first ones verifies (TRX_SYS, DICT_HDR, the rollback
        segment headers, the doublewrite area).  A crash that tore page 0 in place left its
        doublewrite copy whole (the copy is durable before the in-place write begins), so the
        area always holds a page that verifies, as InnoDB 8.0 restores page 0 from it.

        Raises:
            RecoveryError: no page verifies at any page size.
        """
        f = self.fil.space(0).file
        head = f.pread(fsp.FSP_PAGE_SIZE + 4, 0)
        claimed = fil_page.u32(head, fsp.FSP_PAGE_SIZE) if len(head) == fsp.FSP_PAGE_SIZE + 4 \
            else 0
        if claimed in PAGE_SIZES and \
                fil_page.verify(f.pread(claimed, 0), claimed, expect=(0, 0)) == PAGE_OK:
            return claimed
        self.stats["recv_page_size_from_other_page"] += 1
        last = trx_sys.first_free_page(trx_sys.MAX_RSEGS, trx_sys.DBLWR_MAX_PAGES)
        for ps in PAGE_SIZES:
            for pno in range(1, last):
                raw = f.pread(ps, pno * ps)
                if len(raw) < ps:
                    break
                if fil_page.verify(raw, ps) == PAGE_OK:
                    return ps
        raise RecoveryError(f"{SYS_FILE}: none of its first {last} pages verifies at any page "
                            f"size {PAGE_SIZES}")

    def _dblwr_area_on_disk(self) -> tuple[int, int]:
        """(first page, pages) of the doublewrite area, read raw from TRX_SYS before recovery
        (as buf_dblwr_init_or_load_pages).  A TRX_SYS page that verifies gives the whole
        geometry, checked against the configuration; a torn one still gives the doublewrite
        header if either copy kept its magic number (the copy in the area may be what repairs
        TRX_SYS).  With neither, the area the configuration implies is used, and the recovered
        TRX_SYS is checked before any transaction is resurrected (recovery.recover).

        Raises:
            ConfigMismatch: n_rollback_segments or doublewrite_batch_pages differ from disk.
            Corruption: a TRX_SYS page that verifies but records an impossible geometry.
        """
        ps = self.config.page_size
        raw = self.fil.space(0).read_page(trx_sys.TRX_SYS_PAGE_NO)
        if fil_page.verify(raw, ps, expect=(0, trx_sys.TRX_SYS_PAGE_NO)) == PAGE_OK:
            g = self.check_sys_geometry(raw, "TRX_SYS")
            return g.dblwr_first, g.dblwr_pages
        self.stats["recv_trx_sys_unverified_before_redo"] += 1
        hdr = trx_sys.read_doublewrite_header(raw)
        if hdr is not None and trx_sys.doublewrite_first_page(1) <= hdr[0] <= \
                trx_sys.doublewrite_first_page(trx_sys.MAX_RSEGS) and \
                trx_sys.DBLWR_SINGLE_SLOTS < hdr[1] <= trx_sys.DBLWR_MAX_PAGES:
            self._check_setting("doublewrite_batch_pages", self.config.doublewrite_batch_pages,
                                hdr[1] - trx_sys.DBLWR_SINGLE_SLOTS,
                                "the doublewrite header on TRX_SYS")
            return hdr
        self.stats["recv_dblwr_area_from_config"] += 1
        return trx_sys.doublewrite_first_page(self.config.n_rollback_segments), \
            self._dblwr_pages()

    def check_sys_geometry(self, frame, where: str) -> trx_sys.SysGeometry:
        """Read the geometry a verified TRX_SYS page records and refuse a configuration that
        disagrees with it (rollback segments, doublewrite area).

        Raises:
            ConfigMismatch: n_rollback_segments or doublewrite_batch_pages differ.
            Corruption: an impossible geometry (trx_sys.read_geometry).
        """
        g = trx_sys.read_geometry(frame, self.config.page_size)
        self._check_setting("n_rollback_segments", self.config.n_rollback_segments, g.n_rsegs,
                            where)
        self._check_setting("doublewrite_batch_pages", self.config.doublewrite_batch_pages,
                            g.dblwr_pages - trx_sys.DBLWR_SINGLE_SLOTS,
                            f"{where}: the doublewrite header")
        if self.dblwr is not None and (self.dblwr.first_page, self.dblwr.n_pages) != \
                (g.dblwr_first, g.dblwr_pages):
            raise Corruption(f"{where}: doublewrite area of {g.dblwr_pages} pages at page "
                             f"{g.dblwr_first}, recovery used {self.dblwr.n_pages} at "
                             f"{self.dblwr.first_page}")
        return g

    @staticmethod
    def _check_setting(setting: str, configured: int, on_disk: int, where: str) -> None:
        if configured != on_disk:
            raise ConfigMismatch(setting, configured, on_disk, where)

    def open_dictionary(self) -> None:
        """After redo apply (engine.recovery): open every table the recovered dictionary lists
        whose file the redo log did not name, check each table's FSP header (space id, page
        size), and refuse a space the redo named that no table owns.

        Raises:
            RecoveryError: a table's file is missing; a file holds another space; a space the
                redo log named is no table's.
            Corruption: a tablespace's page size differs from the system tablespace's.
        """
        d = self.buf.get(0, trx_sys.DICT_HDR_PAGE_NO).data
        tables = trx_sys.decode_dict(d)
        unowned = sorted(set(self.fil.spaces) - {space for _, space, _, _ in tables} - {0})
        if unowned:
            raise RecoveryError(f"the redo log names {self.fil.space(unowned[0]).path} (space "
                                f"{unowned[0]}), which no table of the recovered dictionary "
                                f"owns")
        for name, space, root, sec_root in tables:
            path = name + IBD_SUFFIX
            if space not in self.fil.spaces:
                if not self.vfs.exists(path):
                    raise RecoveryError(f"table {name}: tablespace file {path} is missing")
                self.fil.open_space(space, path)
            elif self.fil.space(space).path != path:
                raise RecoveryError(f"table {name} (space {space}): the redo log names its file "
                                    f"{self.fil.space(space).path}, the dictionary {path}")
            head = self.buf.get(space, 0).data
            if fil_page.u32(head, fsp.FSP_SPACE_ID) != space:
                raise RecoveryError(f"{path} holds space {fil_page.u32(head, fsp.FSP_SPACE_ID)}"
                                    f", the dictionary says {space}")
            if fil_page.u32(head, fsp.FSP_PAGE_SIZE) != self.config.page_size:
                raise Corruption(f"{path}: its FSP header says page size "
                                 f"{fil_page.u32(head, fsp.FSP_PAGE_SIZE)}, the system "
                                 f"tablespace's is {self.config.page_size}")
            self._add_index(name, space, root, sec_root)

    # -- transactions -----------------------------------------------------------------------------
    def begin(self, isolation: str | None = None) -> Trx:
        """Start a transaction at ``isolation`` (read_view.REPEATABLE_READ or READ_COMMITTED;
        default: the configuration's ``transaction_isolation``).

        Raises:
            EngineError: an unknown isolation level.
        """
        self._usable()
        isolation = isolation or self.config.transaction_isolation
        if isolation not in read_view.ISOLATION_LEVELS:
            raise EngineError(f"isolation level must be one of {read_view.ISOLATION_LEVELS}, "
                              f"got {isolation!r}")
        return self.trx_sys.begin(isolation)

    def _usable(self) -> None:
        if self.panicked:
            raise EnginePanic(self.panicked)
        if self.closed:
            raise EngineError("engine is closed")

    def _active(self, trx: Trx) -> None:
        self._usable()
        if trx.state != ACTIVE or trx.resurrected:
            raise TrxStateError(f"trx {trx.id} is {trx.state}"
                                + (" (resurrected)" if trx.resurrected else ""))

    def _index(self, table: str) -> btr.Index:
        try:
            return self.tables[table]
        except KeyError:
            raise EngineError(f"no table {table!r}") from None

    # consistent (non-locking) reads
    def get(self, trx: Trx, table: str, key: int) -> bytes | None:
        """The row's value as ``trx``'s read view sees it (a consistent read: no locks; its
        own changes are visible), or None.

        Raises: TrxStateError, Corruption (a version chain that cannot be followed).
        """
        self._active(trx)
        self._check_key(key)
        idx = self._index(table)
        view = self.trx_sys.view_for(trx)
        return row.visible_value(self.buf, idx.get(self.buf, key), idx.space, view, self.stats)

    def scan(self, trx: Trx, table: str, lo: int, hi: int, limit: int = 1 << 30):
        """[(key, value)] with lo <= key <= hi in key order, at most ``limit``, as ``trx``'s
        read view sees them (a consistent read: no locks)."""
        self._active(trx)
        idx = self._index(table)
        view = self.trx_sys.view_for(trx)
        out = []
        for r in idx.scan(self.buf, lo, hi, 1 << 62):
            v = row.visible_value(self.buf, r, idx.space, view, self.stats)
            if v is not None:
                out.append((bp.rec_key(r), v))
                if len(out) >= limit:
                    break
        return out

    def lookup_k(self, trx: Trx, table: str, k: int) -> list[tuple[int, bytes]]:
        """[(key, value)] of the rows whose ``k`` is ``k``, in key order, as ``trx``'s read view
        sees them, found through the secondary index: every entry (k, pk), delete-marked or
        not, is checked against the clustered record's visible version (as InnoDB does when
        the page is newer than the view; row_sel_sec_rec_is_for_clust_rec).

        Raises:
            EngineError: the table has no index on k.
        """
        self._active(trx)
        idx = self._index(table)
        sidx = self.sec_index_by_space(idx.space)
        if sidx is None:
            raise EngineError(f"table {table} has no index on k")
        if not isinstance(k, int) or not 0 <= k < 1 << 32:
            raise EngineError(f"k must be an integer in [0, 2**32), got {k!r}")
        view = self.trx_sys.view_for(trx)
        self.stats["sec_index_lookups"] += 1
        out = []
        for e in sidx.scan(self.buf, bp.sec_key(k, 0), bp.sec_key(k, 0xFFFFFFFF), 1 << 62):
            pk = bp.sec_key_parts(bp.rec_key(e))[1]
            v = row.visible_value(self.buf, idx.get(self.buf, pk), idx.space, view, self.stats)
            if v is not None and row.row_k(v) == k:
                out.append((pk, v))
        return out

    # locking reads and writes
    def _current(self, trx: Trx, table: str, key: int):
        """(index, current clustered record or None, secondary index) under an X lock."""
        self._active(trx)
        self._check_key(key)
        idx = self._index(table)
        self.trx_sys.lock_sys.acquire(trx, table, idx.space, key, "X")
        return idx, idx.get(self.buf, key), self.sec_index_by_space(idx.space)

    def get_for_update(self, trx: Trx, table: str, key: int) -> bytes | None:
        """SELECT ... FOR UPDATE: the row's current (latest) value under an exclusive lock,
        or None.  Raises LockConflict, TrxStateError."""
        _, cur, _ = self._current(trx, table, key)
        return None if cur is None or bp.is_delete_marked(cur) else bp.leaf_value(cur)

    def _check_value(self, value: bytes, sidx=None, key: int = 0) -> None:
        limit = btr.max_record_size(self.config.page_size) - bp.REC_VALUE
        if not isinstance(value, (bytes, bytearray)) or len(value) > limit:
            raise EngineError(f"value must be bytes of at most {limit} bytes for page size "
                              f"{self.config.page_size}")
        if sidx is not None and (len(value) < 4 or key >= 1 << 32):
            raise EngineError("a table with an index on k takes values of at least 4 bytes "
                              "(k) and keys below 2**32")

    @staticmethod
    def _check_key(key: int) -> None:
        """Keys are unsigned 64-bit integers; reject anything else before any mtr starts (an
        unencodable key inside an mtr would panic the engine)."""
        if not isinstance(key, int) or not 0 <= key < 1 << 64:
            raise EngineError(f"key must be an integer in [0, 2**64), got {key!r}")

    def insert(self, trx: Trx, table: str, key: int, value: bytes) -> None:
        """Insert a new row (over a delete-marked record of the same key, if purge has not
        removed it yet: TRX_UNDO_UPD_DEL_REC).  Raises DuplicateKey, LockConflict,
        TrxStateError."""
        idx, cur, sidx = self._current(trx, table, key)
        self._check_value(value, sidx, key)
        if cur is not None and not bp.is_delete_marked(cur):
            raise DuplicateKey(f"{table}: key {key} exists")
        with self.mtr() as m:
            if cur is None:
                rp = self.trx_sys.add_undo_rec(m, trx, undo.TRX_UNDO_INSERT_REC, idx.space, key)
                idx.insert(m, bp.make_leaf_rec(key, trx.id, rp, bytes(value)))
            else:
                rp = self.trx_sys.add_undo_rec(m, trx, undo.TRX_UNDO_UPD_DEL_REC, idx.space,
                                               key, cur)
                idx.update(m, bp.make_leaf_rec(key, trx.id, rp, bytes(value)))
                self.stats["insert_over_delete_marked"] += 1
            if sidx is not None:
                row.sec_insert(m, sidx, row.row_k(value), key)

    def update(self, trx: Trx, table: str, key: int, value: bytes) -> bool:
        """Replace the row's value; False if there is no such row."""
        idx, cur, sidx = self._current(trx, table, key)
        self._check_value(value, sidx, key)
        if cur is None or bp.is_delete_marked(cur):
            return False
        with self.mtr() as m:
            rp = self.trx_sys.add_undo_rec(m, trx, undo.TRX_UNDO_UPD_EXIST_REC, idx.space, key,
                                           cur)
            idx.update(m, bp.make_leaf_rec(key, trx.id, rp, bytes(value)))
            if sidx is not None and row.rec_k(cur) != row.row_k(value):
                row.sec_delete_mark(m, sidx, row.rec_k(cur), key)
                row.sec_insert(m, sidx, row.row_k(value), key)
                self.stats["sec_index_updates"] += 1
        return True

    def put(self, trx: Trx, table: str, key: int, value: bytes) -> None:
        """Insert or update."""
        if not self.update(trx, table, key, value):
            self.insert(trx, table, key, value)

    def delete(self, trx: Trx, table: str, key: int) -> bool:
        """Delete-mark the row (purge removes it once no read view needs it); False if there is
        no such row."""
        idx, cur, sidx = self._current(trx, table, key)
        if cur is None or bp.is_delete_marked(cur):
            return False
        with self.mtr() as m:
            rp = self.trx_sys.add_undo_rec(m, trx, undo.TRX_UNDO_DEL_MARK_REC, idx.space, key,
                                           cur)
            idx.update(m, bp.with_delete_mark(bp.make_leaf_rec(key, trx.id, rp,
                                                               bp.leaf_value(cur)), True))
            if sidx is not None:
                row.sec_delete_mark(m, sidx, row.rec_k(cur), key)
        return True

    def prepare(self, trx: Trx) -> int:
        """XA PREPARE: after this returns (made durable as a commit is, by
        flush_log_at_trx_commit) the transaction survives a crash as prepared, with its locks,
        until :meth:`commit` or :meth:`rollback` resolves it.  Returns the prepare LSN (0 if
        it changed nothing)."""
        self._active(trx)
        return self.trx_sys.prepare(trx)

    def prepared_transactions(self) -> list[Trx]:
        """Transactions in the PREPARED state (XA RECOVER), by id."""
        return sorted((t for t in self.trx_sys.active.values() if t.state == PREPARED),
                      key=lambda t: t.id)

    def _resolvable(self, trx: Trx) -> None:
        self._usable()
        if trx.state != PREPARED:
            self._active(trx)

    def commit(self, trx: Trx) -> int:
        """Commit an active or prepared transaction; returns the commit LSN (0 if the
        transaction changed nothing).  When this returns, the commit survives a power loss
        with flush_log_at_trx_commit=1 and a process kill with 2; with 0 (and for a power
        loss, 2) only once ``log.flushed_lsn`` (or for a process kill, ``log.written_lsn``)
        reaches the commit LSN: the ``log_writer`` background task, a page flush or a
        checkpoint gets it there."""
        self._resolvable(trx)
        lsn = self.trx_sys.commit(trx)
        if lsn and self.log.flushed_lsn < lsn:
            self.stats["trx_commit_acked_not_durable"] += 1
        return lsn

    def _flush_log_at_commit(self, commit_lsn: int) -> None:
        """innodb_flush_log_at_trx_commit at commit (``commit_lsn``: the commit mtr's end LSN).
        1: write and fsync the log up to the commit LSN (mutant 1 acknowledges before the
        fsync); 2: write it to the OS, no fsync (mutant ``trx-commit-2-no-write`` skips the
        write); 0: nothing (the log stays in the process's log buffer)."""
        mode = self.config.flush_log_at_trx_commit
        if mode == 1:
            self.log.write_up_to(commit_lsn, flush=True)
        elif mode == 2:
            self.log.write_up_to(commit_lsn, flush=False)

    def rollback(self, trx: Trx) -> None:
        """Roll back every change of an active or prepared ``trx`` (each undo step
        redo-logged)."""
        self._resolvable(trx)
        self.trx_sys.rollback(trx)

    # -- background work --------------------------------------------------------------------------
    BACKGROUND_TASKS = ("log_writer", "page_cleaner", "checkpoint", "rollback", "purge")

    @property
    def background_tasks(self) -> tuple[str, ...]:
        """The rotation :meth:`run_background` steps through.  With flush_log_at_trx_commit=1
        there is no ``log_writer``: every commit made its log durable already (leaving it out
        keeps the rotation, and so every mode-1 IO trace, as it was before modes 0 and 2)."""
        if self.config.flush_log_at_trx_commit == 1:
            return self.BACKGROUND_TASKS[1:]
        return self.BACKGROUND_TASKS

    def run_background(self, steps: int = 1) -> int:
        """Run ``steps`` steps of background work in a fixed rotation (with
        flush_log_at_trx_commit 0 or 2 a log write and fsync, then a page cleaner batch, a
        checkpoint, one background-rollback step); a task with nothing to do passes its turn
        to the next; then a purge batch.  Returns the number of steps that did work.  Deterministic (no threads,
        no clock)."""
        self._usable()
        tasks = self.background_tasks
        done = 0
        for _ in range(steps):
            for k in range(len(tasks)):
                task = tasks[(self._bg_step + k) % len(tasks)]
                if getattr(self, "_bg_" + task)():
                    self.stats["bg_" + task] += 1
                    done += 1
                    break
            self._bg_step += 1
        return done

    def _bg_page_cleaner(self) -> bool:
        return self.buf.flush_batch(self.config.page_cleaner_batch) > 0

    def _bg_checkpoint(self) -> bool:
        oldest = self.buf.oldest_modification()
        if not oldest and self.log.end_lsn == self._marker_end:
            return False        # nothing logged since the last checkpoint's own marker
        if (oldest or self.log.end_lsn) <= self.log.checkpoint_lsn:
            return False
        self.make_checkpoint()
        return True

    def _bg_log_writer(self) -> bool:
        """InnoDB's once-per-second log flush (srv_master_thread → log_buffer_sync_in_background)
        as one background step: write and fsync the log up to the end of the last mtr
        (``log.end_lsn``).  False when the log is durable there already."""
        if self.log.flushed_lsn >= self.log.end_lsn:
            return False
        self.log.write_up_to(self.log.end_lsn, flush=True)
        return True

    def _to_roll_back(self) -> list[Trx]:
        """Resurrected ACTIVE transactions (not PREPARED ones), newest first."""
        return sorted((t for t in self.trx_sys.active.values()
                       if t.resurrected and t.state == ACTIVE), key=lambda t: -t.id)

    def _bg_rollback(self) -> bool:
        pending = self._to_roll_back()
        if not pending:
            return False
        self.trx_sys.rollback_step(pending[0])
        return True

    def _bg_purge(self) -> bool:
        """One purge batch (engine.purge): at most ``purge_batch`` undo records."""
        return self.purge.step(self.config.purge_batch)

    def background_work_pending(self) -> bool:
        return bool(self.buf.flush_list) or bool(self._to_roll_back()) or \
            ("log_writer" in self.background_tasks and self.log.flushed_lsn < self.log.end_lsn)

    def finish_background_rollback(self) -> int:
        """Run background rollback to completion; return the transactions rolled back."""
        n = 0
        for t in self._to_roll_back():
            self.trx_sys.rollback(t)
            n += 1
        return n

    def purge_all(self) -> int:
        """Run purge until nothing is purgeable (with no read view open: the whole history
        list); returns the purge steps that did work."""
        self._usable()
        return self.purge.run_all()

    def make_checkpoint(self, flush: bool = False) -> int:
        """A fuzzy checkpoint (log_checkpoint): fsync the data files, take the oldest
        modification in the flush list (or the current LSN when nothing is dirty), make the log
        durable to it and write it to the next checkpoint slot.  With ``flush`` the buffer pool
        is flushed first (a sharp checkpoint).  Returns the checkpoint LSN.

        Raises:
            EnginePanic: the engine has stopped (after an IO failure no checkpoint may claim
                that unsynced pages are durable)."""
        if self.panicked:
            raise EnginePanic(self.panicked)
        if flush:
            self.buf.flush_all()
        self._sync_data_files()
        # with nothing dirty: the end of the last mtr, not the next write position, which may
        # be a block not yet written (LogSys._close_block) whose slot still holds stale blocks
        lsn = self.buf.oldest_modification() or self.log.end_lsn
        lsn = max(lsn, self.log.checkpoint_lsn)
        # the file names of every space changed after lsn, then the MLOG_CHECKPOINT marker
        # (fil_names_clear), durable before the checkpoint slot names lsn
        marker = self.fil.checkpoint_names(lsn) + [mtr_log.checkpoint_marker(lsn)]
        _, self._marker_end = self.log.append(mtr_log.encode_mtr(marker))
        self.log.write_up_to(self._marker_end, flush=True)
        self.log.write_checkpoint(lsn)
        self.stats["checkpoint_file_names"] += len(marker) - 1
        self.stats["checkpoint_markers"] += 1
        return lsn

    def _sync_data_files(self) -> None:
        """fsync the data files before a checkpoint claims their pages durable (mutant
        ``checkpoint-before-data-fsync`` skips it)."""
        self.fil.fsync_all()

    def checkpoint(self) -> int:
        """Public alias of :meth:`make_checkpoint` (fuzzy)."""
        self._usable()
        return self.make_checkpoint()

    def close(self) -> None:
        """Clean shutdown: finish background rollback, flush everything, checkpoint."""
        if self.closed:
            return
        if not self.panicked:
            self.finish_background_rollback()
            self.make_checkpoint(flush=True)
        self.fil.close()
        self.log.file.close()
        self.closed = True

    # -- inspection -------------------------------------------------------------------------------
    def all_rows(self, table: str) -> dict[int, bytes]:
        """Every row of ``table``: the latest version of every record that is not
        delete-marked (no locks, no read view; for checkers after recovery and rollback).

        Raises:
            EnginePanic: the engine has stopped (its pages may hold unlogged changes)."""
        if self.panicked:
            raise EnginePanic(self.panicked)
        idx = self._index(table)
        return bp.live_values(*idx.scan_keyed(self.buf, 0, (1 << 64) - 1, 1 << 62))

    def _check(self) -> None:
        """Assert the invariants of the buffer pool, the doublewrite buffer, the transaction
        system, the history lists and every tree."""
        self.buf._check()
        if self.dblwr is not None:
            self.dblwr._check()
        self.trx_sys._check()
        self.purge._check()
        for idx in self.tables.values():
            idx._check(self.buf)
        for sidx in self._sec_by_space.values():
            sidx._check(self.buf)
