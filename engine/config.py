"""Engine settings (the InnoDB variable each follows is named)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from tornpage.engine.errors import RecoveryError
from tornpage.engine.log import LOG_START_LSN as LOG_START
from tornpage.engine.log import OS_FILE_LOG_BLOCK_SIZE as LOG_BLOCK

PAGE_SIZES = (4096, 8192, 16384, 32768, 65536)
MAX_INITIAL_LSN = 1 << 62       # an LSN is a u64 on disk: room for 2**62 bytes of redo after it
MAX_INITIAL_TRX_ID = 1 << 47    # DB_TRX_ID is 6 bytes: room for 2**47 transactions after it


class ConfigError(ValueError):
    """An engine setting out of range."""


class ConfigMismatch(ConfigError, RecoveryError):
    """An existing database disagrees with the configuration it is opened with: a setting that
    is fixed when the database is created (page_size, n_rollback_segments,
    doublewrite_batch_pages, log_file_size) differs from what is on disk.  The engine opens by
    what is on disk, so it refuses rather than run with two answers.  Also a RecoveryError: the
    database does not open."""

    def __init__(self, setting: str, configured, on_disk, where: str) -> None:
        super().__init__(f"{setting}: configured {configured}, on disk {on_disk} ({where}); "
                         f"open it with {setting}={on_disk}")
        self.setting, self.configured, self.on_disk = setting, configured, on_disk


@dataclass(frozen=True)
class EngineConfig:
    page_size: int = 16384              # innodb_page_size, bytes
    buffer_pool_pages: int = 128        # innodb_buffer_pool_size / page_size, pages
    log_file_size: int = 1 << 20        # innodb_log_file_size, bytes (one circular file)
    flush_log_at_trx_commit: int = 1    # innodb_flush_log_at_trx_commit: 1 write and fsync
                                        # at commit, 2 write at commit, 0 nothing at commit
                                        # (2 and 0: the log_writer background task fsyncs)
    doublewrite: bool = True            # innodb_doublewrite
    doublewrite_batch_pages: int = 16   # batch slots of the doublewrite area (InnoDB: 64 per
                                        # block), pages; then DBLWR_SINGLE_SLOTS single slots
    page_cleaner_batch: int = 8         # pages the page cleaner flushes per step (io_capacity),
                                        # and the size of a doublewrite batch segment
    n_rollback_segments: int = 2        # innodb_rollback_segments
    undo_records_per_rollback_step: int = 1
    transaction_isolation: str = "REPEATABLE-READ"   # transaction_isolation: REPEATABLE-READ
                                                     # or READ-COMMITTED
    purge_batch: int = 4                # undo records per purge step (innodb_purge_batch_size)
    watchdog_page_accesses: int | None = None   # buffer pool page accesses one opened engine
                                                # may make (None: no limit); past it
                                                # WatchdogExpired (a hang that makes no IO)
    log_flush_every_mtrs: int = 0       # write and fsync the log after every N-th mtr commit
                                        # (0: never): what other threads' commits and the log
                                        # writer thread do to a real engine's log, so that any
                                        # mtr boundary may be the durable end of the redo
    # Creation only (Engine.create; an opened database keeps what is on disk): how far its
    # counters had run before it was created, as if it had been in service for a long time.
    # Crossing a width boundary (LSN 2**32: the page trailer holds its low 32 bits; LSN 2**39:
    # log block numbers wrap; trx id 2**32) is what a new database never does in a test.
    initial_lsn: int = LOG_START        # the log's first LSN, bytes; a multiple of LOG_BLOCK
    initial_trx_id: int = 0             # trx ids already used (the first is this + 256)

    def __post_init__(self) -> None:
        if self.page_size not in PAGE_SIZES:
            raise ConfigError(f"page_size must be one of {PAGE_SIZES}, got {self.page_size}")
        if self.buffer_pool_pages < 16:
            raise ConfigError("buffer_pool_pages must be at least 16")
        if self.log_file_size % 512 or \
                self.log_file_size < self.min_log_file_size(self.page_size):
            raise ConfigError(f"log_file_size must be a multiple of 512 and at least "
                              f"{self.min_log_file_size(self.page_size)} bytes for page size "
                              f"{self.page_size}")
        if self.flush_log_at_trx_commit not in (0, 1, 2):
            raise ConfigError("flush_log_at_trx_commit must be 0, 1 or 2")
        if not 1 <= self.doublewrite_batch_pages <= 64:
            raise ConfigError("doublewrite_batch_pages must be in 1..64")
        if not 1 <= self.n_rollback_segments <= 127:
            raise ConfigError("n_rollback_segments must be in 1..127")
        if self.transaction_isolation not in ("REPEATABLE-READ", "READ-COMMITTED"):
            raise ConfigError("transaction_isolation must be REPEATABLE-READ or READ-COMMITTED")
        if not 1 <= self.purge_batch <= 1024:
            raise ConfigError("purge_batch must be in 1..1024")
        if self.watchdog_page_accesses is not None and self.watchdog_page_accesses < 1:
            raise ConfigError("watchdog_page_accesses must be at least 1 (or None)")
        if self.initial_lsn % LOG_BLOCK or not LOG_START <= self.initial_lsn <= MAX_INITIAL_LSN:
            raise ConfigError(f"initial_lsn must be a multiple of {LOG_BLOCK} in [{LOG_START}, "
                              f"{MAX_INITIAL_LSN}], got {self.initial_lsn}")
        if not 0 <= self.initial_trx_id <= MAX_INITIAL_TRX_ID:
            raise ConfigError(f"initial_trx_id must be in [0, {MAX_INITIAL_TRX_ID}], got "
                              f"{self.initial_trx_id}")
        if self.log_flush_every_mtrs < 0:
            raise ConfigError("log_flush_every_mtrs must be 0 (never) or more")
        if not 1 <= self.page_cleaner_batch <= self.doublewrite_batch_pages:
            raise ConfigError("page_cleaner_batch must be in 1..doublewrite_batch_pages")

    @property
    def log_free_check_margin(self) -> int:
        """Bytes of log kept free for the largest mtr (a root raise plus splits of two levels
        copies about two pages of records): below this, log_free_check checkpoints."""
        return 4 * self.page_size + 2048

    @staticmethod
    def min_log_file_size(page_size: int) -> int:
        """The smallest log_file_size (bytes) allowed for ``page_size``: four margins."""
        return 2048 + 4 * (4 * page_size + 2048)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "EngineConfig":
        try:
            return cls(**d)
        except TypeError as e:
            raise ConfigError(f"bad engine config: {e}") from None
