"""Typed errors of the engine.  The engine never returns data it could not verify."""


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class WatchdogExpired(BaseException):
    """The engine made more buffer pool page accesses than its watchdog allows
    (``EngineConfig.watchdog_page_accesses``): it hangs in a loop that never calls the file
    system (over pages it has cached, say a B+tree level whose sibling links form a cycle).
    Counted, never timed, so the same run always expires at the same access; InnoDB's
    counterpart is srv_error_monitor_thread, which kills the server after a semaphore wait of
    600 s.  A BaseException, as KeyboardInterrupt is, so no ``except Exception`` in the engine
    swallows it."""

    def __init__(self, budget: int, where: tuple[int, int]) -> None:
        super().__init__(f"more than {budget} buffer pool page accesses (the last: page "
                         f"{where[0]}:{where[1]})")
        self.budget = budget


class EnginePanic(EngineError):
    """The engine has stopped: an mtr failed after changing pages (their changes are not in
    the log), or an IO call failed.  Every later call is refused; only recovery after a
    restart goes on (InnoDB asserts and aborts the process)."""


class LockConflict(EngineError):
    """A row lock is held by another transaction (there is no lock wait: the caller decides)."""

    def __init__(self, table: str, key: int, holder: int) -> None:
        super().__init__(f"row {table}:{key} is locked by trx {holder}")
        self.table, self.key, self.holder = table, key, holder


class DuplicateKey(EngineError):
    """An insert found a row with the same primary key."""


class TrxStateError(EngineError):
    """An operation on a transaction that is not active (committed, rolled back, or resurrected)."""


class Corruption(EngineError):
    """A page or log block failed verification and no valid copy exists."""


class LayoutError(Corruption):
    """A page whose contents do not parse, or a change (a redo record, an undo record) that
    does not fit the page it is for: a wrong page image.  Subclassed by each module that owns
    an on-disk structure (btr_page.PageLayoutError, undo.UndoLayoutError,
    mtr_log.RedoApplyError)."""


class PageFromFuture(Corruption):
    """A page's LSN is newer than the end of the recovered redo log (a WAL violation)."""


class TornPageUnrepairable(Corruption):
    """A torn data page with no valid doublewrite copy and no redo that re-creates it."""


class LostWrite(Corruption):
    """A write the disk acknowledged does not read back after its fsync: it was lost or
    misdirected (engine.os_file's write verification).  The engine has stopped."""


class BufferPoolFull(EngineError):
    """The buffer pool cannot make room: every frame (for a full flush, every dirty frame) is
    fixed by an open mtr, so the pool is too small for the mtr (raised inside an mtr, so the
    engine stops)."""


class RecoveryError(EngineError):
    """Recovery cannot start or cannot finish (no valid checkpoint, missing files, bad log)."""


class LogFull(EngineError):
    """An mtr would overwrite redo newer than the last checkpoint (should never surface)."""


class EngineIOError(EngineError):
    """An IO call on one of the engine's files failed (EIO, ENOSPC, ...); the engine has
    stopped, as InnoDB aborts on a failed read, write or fsync (engine.os_file)."""
