"""The redo log: one circular file of 512-byte blocks, two checkpoint slots (include/log0log.h,
log/log0log.cc for the writer, log/log0recv.cc for the scanner; LevelDB's log_writer/log_reader
mirror each other the same way).

File layout (F = log file size, bytes):

    0     512   header block: LOG_HEADER_FORMAT u32 @0, LOG_HEADER_START_LSN u64 @8
    512   512   checkpoint slot 1 (even checkpoint numbers)
    1024  512   unused
    1536  512   checkpoint slot 2 (odd checkpoint numbers)
    2048  F-2048  the circular data area: the block holding LSN L is at
                  2048 + (floor512(L) - S) mod (F - 2048), S the database's start LSN
                  (LOG_HEADER_START_LSN: LOG_START_LSN for a new database, larger for one
                  created aged, see ``EngineConfig.initial_lsn``); recovery finds it from the
                  checkpoint, which names the offset of its own block (LOG_CHECKPOINT_OFFSET, as
                  log_group_read_checkpoint_info), so it never depends on the header block

Block (512 bytes):
    0   4  LOG_BLOCK_HDR_NO          ((lsn / 512) mod (2^30 - 1)) + 1; bit 31 is the flush bit,
                                     bit 30 marks the first block of a run (see below; InnoDB
                                     takes mod 2^30 and has no run flag)
    4   2  LOG_BLOCK_HDR_DATA_LEN    bytes used including the header; 512 = full
    6   2  LOG_BLOCK_FIRST_REC_GROUP offset of the first mtr that starts in the block, 0 if none
    8   4  LOG_BLOCK_CHECKPOINT_NO   low 32 bits of the next checkpoint number when written
    12 496 payload
    508 4  LOG_BLOCK_CHECKSUM        crc32c of bytes [0, 508)

Checkpoint slot: LOG_CHECKPOINT_NO u64 @0, LOG_CHECKPOINT_LSN u64 @8, LOG_CHECKPOINT_OFFSET u64
@16, crc32c of [0, 508) @508.

LSN is a byte address in the endless log stream, block headers and trailers included.  An mtr's
end LSN is normalised past a trailer: it is either a payload position (block offset 12..507) or
a block start (offset 0).  The next mtr's start LSN equals the previous mtr's end LSN, also
after an fsync that left the last block partial, although then the writer, which never rewrites
a durable block, puts the next mtr's bytes in the next block (``LogSys._close_block``; a departure from InnoDB, which
rewrites the last block in place and can lose durable redo on a device whose torn writes destroy
old sector contents).  A partial block therefore ends a *run* of blocks, not necessarily the log;
the scanner parses each run on its own and discards an incomplete mtr at the end of a run.  A run
also ends before a block flagged LOG_BLOCK_RUN_START: recovery resumes writing at the next block
(never rewriting the tail block), and the tail may hold an incomplete mtr the crash cut even
when that block is full.  The writer flags the first block after a closed block, a restart or a
checkpoint, so inside a run every block carries the same checkpoint number; an unflagged block
after a partial one, or with another checkpoint number, is a leftover of an earlier crashed run
and ends the scan.

Invariants (the writer asserts them):
  * nothing is written to the file at or beyond ``floor512(checkpoint LSN) + (F - 2048)``: the
    log never overwrites redo newer than the last checkpoint (MySQL #69477);
  * ``flushed_lsn <= written_lsn <= lsn``;
  * checkpoint numbers alternate slots (even → slot 1, odd → slot 2).

Scan stop conditions (named, as LevelDB's reader names its corruption cases): a block whose
number does not match its LSN (``block-number``), whose checksum fails (``checksum``), whose
data length is impossible (``data-length``), whose checkpoint number is older than the block
before it (``stale-block``); after a partial block, a block whose number does not match (not
written since the last lap) is the normal end (``end-of-log``).  A checksum-valid block whose
number is neither the expected one nor a whole number of laps older was put there by a
misdirected write: recovery refuses (RecoveryError) rather than end the log early.  So it
does for a checksum-valid block a whole number of laps newer: the writer went round the file
past the checkpoint and overwrote redo recovery needs (``overrun_by``).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import crc32c as _crc

from tornpage.engine.bytecache import BoundedCache
from tornpage.engine.errors import LogFull, RecoveryError
from tornpage.engine.mtr_log import RedoParseError, RedoRecord, parse_mtr
from tornpage.engine.page import put_u16, put_u32, put_u64, u16, u32, u64

OS_FILE_LOG_BLOCK_SIZE = 512
LOG_BLOCK_HDR_NO = 0
LOG_BLOCK_HDR_DATA_LEN = 4
LOG_BLOCK_FIRST_REC_GROUP = 6
LOG_BLOCK_CHECKPOINT_NO = 8
LOG_BLOCK_HDR_SIZE = 12
LOG_BLOCK_TRL_SIZE = 4
LOG_BLOCK_CHECKSUM = OS_FILE_LOG_BLOCK_SIZE - LOG_BLOCK_TRL_SIZE
LOG_BLOCK_PAYLOAD = LOG_BLOCK_CHECKSUM - LOG_BLOCK_HDR_SIZE
LOG_BLOCK_FLUSH_BIT_MASK = 0x80000000
LOG_BLOCK_RUN_START_MASK = 0x40000000   # tornpage: the first block after a closed block or a
                                        # restart; any incomplete mtr before it is discarded
LOG_BLOCK_NO_MASK = 0x3FFFFFFF

LOG_FILE_HDR_SIZE = 2048
LOG_HEADER_FORMAT = 0
LOG_HEADER_START_LSN = 8
LOG_HEADER_FORMAT_TORNPAGE = 0x746F726E  # "torn"
LOG_CHECKPOINT_1 = 512
LOG_CHECKPOINT_2 = 1536
LOG_CHECKPOINT_NO = 0
LOG_CHECKPOINT_LSN = 8
LOG_CHECKPOINT_OFFSET = 16
LOG_START_LSN = 8192             # a new database's first LSN (InnoDB: 16 blocks)
BLOCK = OS_FILE_LOG_BLOCK_SIZE

STOP_BLOCK_NUMBER = "block-number"
STOP_CHECKSUM = "checksum"
STOP_DATA_LEN = "data-length"
STOP_STALE = "stale-block"
STOP_END = "end-of-log"
STOP_WRAP = "wrapped"


def block_no(lsn: int) -> int:
    """LOG_BLOCK_HDR_NO for the block holding ``lsn``: 1..LOG_BLOCK_NO_MASK.  InnoDB's
    log_block_convert_lsn_to_no takes the block index mod 2**30, so its numbers reach 2**30,
    which is bit 30, our run-start flag: here the index is taken mod 2**30 - 1, so a number
    never reaches the flag (a number of 2**30 read back as 0, a block-number mismatch that
    ended the scan at LSN 2**39 - 512, lost the rest of the log)."""
    return (lsn // BLOCK) % LOG_BLOCK_NO_MASK + 1


def blocks_between(newer_no: int, older_no: int) -> int:
    """How many blocks the block numbered ``newer_no`` lies after ``older_no`` (0 ..
    LOG_BLOCK_NO_MASK - 1), numbers wrapping as :func:`block_no`'s do (after 512 GiB of log)."""
    return (newer_no - older_no) % LOG_BLOCK_NO_MASK


def block_checksum(block) -> int:
    return _crc.crc32c(bytes(block[:LOG_BLOCK_CHECKSUM]))


def lsn_add(lsn: int, n: int) -> int:
    """The LSN after ``n`` more payload bytes written from ``lsn`` (skipping headers and
    trailers; normalised: a position at a trailer becomes the next block's start).  O(1)."""
    if n == 0:
        return lsn
    off = lsn % BLOCK
    if off == 0:
        lsn += LOG_BLOCK_HDR_SIZE
        off = LOG_BLOCK_HDR_SIZE
    assert LOG_BLOCK_HDR_SIZE <= off < LOG_BLOCK_CHECKSUM, lsn
    room = LOG_BLOCK_CHECKSUM - off
    if n < room:
        return lsn + n
    n -= room
    lsn = lsn - off + BLOCK
    full, rem = divmod(n, LOG_BLOCK_PAYLOAD)
    lsn += full * BLOCK
    if rem:
        lsn += LOG_BLOCK_HDR_SIZE + rem
    return lsn


@dataclass(frozen=True)
class Checkpoint:
    no: int
    lsn: int
    offset: int
    slot: int  # file offset of the slot it was read from


def checkpoint_slot_for(no: int) -> int:
    """Even checkpoint numbers go to slot 1, odd to slot 2 (log_group_checkpoint)."""
    return LOG_CHECKPOINT_1 if no % 2 == 0 else LOG_CHECKPOINT_2


def encode_checkpoint(no: int, lsn: int, offset: int) -> bytes:
    b = bytearray(BLOCK)
    put_u64(b, LOG_CHECKPOINT_NO, no)
    put_u64(b, LOG_CHECKPOINT_LSN, lsn)
    put_u64(b, LOG_CHECKPOINT_OFFSET, offset)
    put_u32(b, LOG_BLOCK_CHECKSUM, block_checksum(b))
    return bytes(b)


def decode_checkpoint(b: bytes, slot: int) -> Checkpoint | None:
    """The checkpoint in a slot, or None if the slot is empty or its checksum fails."""
    if len(b) != BLOCK or not any(b) or u32(b, LOG_BLOCK_CHECKSUM) != block_checksum(b):
        return None
    return Checkpoint(u64(b, LOG_CHECKPOINT_NO), u64(b, LOG_CHECKPOINT_LSN),
                      u64(b, LOG_CHECKPOINT_OFFSET), slot)


def data_offset(anchor_lsn: int, anchor_offset: int, block_lsn: int, capacity: int) -> int:
    """File offset (bytes) of the block starting at ``block_lsn``, given one block's place: the
    block of ``anchor_lsn`` lies at ``anchor_offset`` (a new log: the start LSN at 2048; in
    recovery: the checkpoint's block at its LOG_CHECKPOINT_OFFSET).  ``capacity``: bytes of the
    data area."""
    return LOG_FILE_HDR_SIZE + (anchor_offset - LOG_FILE_HDR_SIZE + block_lsn - anchor_lsn) \
        % capacity


def file_header(start_lsn: int = LOG_START_LSN) -> bytes:
    b = bytearray(BLOCK)
    put_u32(b, LOG_HEADER_FORMAT, LOG_HEADER_FORMAT_TORNPAGE)
    put_u64(b, LOG_HEADER_START_LSN, start_lsn)
    put_u32(b, LOG_BLOCK_CHECKSUM, block_checksum(b))
    return bytes(b)


class LogSys:
    """The redo log writer: log buffer, write and flush, checkpoint slots.

    Args:
        file: the open log file (VFS protocol).
        file_size: bytes; the data area is ``file_size - 2048``.
        counters: the engine's stats (a Counter) for its probes: ``log_wraps`` counts the
            writes that started a new lap of the circular data area.
        start_lsn: the LSN a new log starts at (a multiple of 512, at least LOG_START_LSN;
            used by :meth:`create`; an opened log takes its place from the checkpoint in
            :meth:`restart_at`).

    All LSNs are byte addresses (see the module docstring).
    """

    def __init__(self, file, file_size: int, counters: Counter | None = None,
                 start_lsn: int = LOG_START_LSN) -> None:
        assert start_lsn % BLOCK == 0 and start_lsn >= LOG_START_LSN, start_lsn
        self.file = file
        self.file_size = file_size
        self.capacity = file_size - LOG_FILE_HDR_SIZE
        assert self.capacity % BLOCK == 0 and self.capacity >= 64 * BLOCK
        self.start_lsn = start_lsn
        # one block's place in the file, from which every other block's follows (data_offset)
        self._anchor = (start_lsn, LOG_FILE_HDR_SIZE)
        self.lsn = start_lsn
        self.end_lsn = start_lsn         # end of the last mtr (lsn may be past it: padding)
        self._run_start = False          # flag the next new block LOG_BLOCK_RUN_START
        self.buf_start = start_lsn
        self.buf = bytearray()
        self.written_lsn = start_lsn     # the log up to here was written to the OS (pwrite):
                                         # it survives a process kill
        self.flushed_lsn = start_lsn     # ... and up to here fsynced: it survives a power loss
        self.checkpoint_lsn = start_lsn
        self.checkpoint_no = 0
        self.next_checkpoint_no = 0
        self.stats = {"log_writes": 0, "log_fsyncs": 0, "checkpoints": 0}
        self.counters = Counter() if counters is None else counters
        self._lap = 0                    # laps of the data area behind the last block written

    # -- creation and recovery --------------------------------------------------------------------
    def create(self) -> None:
        """Write a fresh file header and empty checkpoint slots (the caller fsyncs)."""
        self.file.pwrite(file_header(self.start_lsn) + bytes(LOG_FILE_HDR_SIZE - BLOCK), 0)
        self.file.truncate(self.file_size)

    def restart_at(self, lsn: int, ckpt: Checkpoint) -> None:
        """Continue writing after recovering from ``ckpt`` up to the recovered LSN ``lsn``.

        A durable block is never rewritten (see :meth:`write_up_to`): when ``lsn`` falls inside
        a block, writing resumes at the next block and the tail of that block (an incomplete mtr
        the crash cut, if any) is left for the scanner to discard at the gap."""
        self.end_lsn = lsn
        if lsn % BLOCK:
            lsn = lsn - lsn % BLOCK + BLOCK
        self.lsn = self.written_lsn = self.flushed_lsn = lsn
        self.checkpoint_lsn = ckpt.lsn
        self.checkpoint_no = ckpt.no
        self.next_checkpoint_no = ckpt.no + 1
        self.buf_start = lsn
        self.buf = bytearray()
        self._run_start = True
        self._anchor = (ckpt.lsn - ckpt.lsn % BLOCK, ckpt.offset)
        self._lap = self._lap_of(lsn - BLOCK)

    # -- addressing ----------------------------------------------------------------------------------
    def offset_of(self, block_lsn: int) -> int:
        """File offset (bytes) of the block starting at ``block_lsn``."""
        assert block_lsn % BLOCK == 0
        return data_offset(*self._anchor, block_lsn, self.capacity)

    def _lap_of(self, block_lsn: int) -> int:
        """How many times the data area was filled before the block at ``block_lsn`` (counted
        from the anchor block's lap, for the ``log_wraps`` probe)."""
        anchor_lsn, anchor_off = self._anchor
        return (anchor_off - LOG_FILE_HDR_SIZE + block_lsn - anchor_lsn) // self.capacity

    def free_space(self) -> int:
        """Bytes of LSN that may still be written before the log would overwrite redo newer
        than the last checkpoint."""
        return (self.checkpoint_lsn - self.checkpoint_lsn % BLOCK) + self.capacity - self.lsn \
            - BLOCK

    # -- appending -----------------------------------------------------------------------------------
    def append(self, data: bytes) -> tuple[int, int]:
        """Append one mtr's bytes to the log buffer; return its (start LSN, end LSN).

        The start LSN is always the previous mtr's end LSN (``end_lsn``), also when the bytes
        begin in the next block because the last one was closed: a page whose LSN is that end
        must have this mtr applied (recovery applies iff start LSN >= page LSN).

        Raises:
            LogFull: the mtr would overwrite redo newer than the last checkpoint (callers run
                a log free check before every mtr, so this means a missing check).
        """
        assert data
        start = self.lsn                     # where the bytes go
        end = lsn_add(start, len(data))
        self._check_capacity(start, end)
        lsn = start
        pos = 0
        first = True
        while pos < len(data):
            off = lsn % BLOCK
            if off == 0:
                self._new_block(lsn)
                lsn += LOG_BLOCK_HDR_SIZE
                off = LOG_BLOCK_HDR_SIZE
            bi = lsn - off - self.buf_start
            if first:
                if u16(self.buf, bi + LOG_BLOCK_FIRST_REC_GROUP) == 0:
                    put_u16(self.buf, bi + LOG_BLOCK_FIRST_REC_GROUP, off)
                first = False
            take = min(len(data) - pos, LOG_BLOCK_CHECKSUM - off)
            self.buf[bi + off:bi + off + take] = data[pos:pos + take]
            pos += take
            lsn += take
            put_u16(self.buf, bi + LOG_BLOCK_HDR_DATA_LEN,
                    BLOCK if off + take == LOG_BLOCK_CHECKSUM else off + take)
            if lsn % BLOCK == LOG_BLOCK_CHECKSUM:
                lsn += LOG_BLOCK_TRL_SIZE
        assert lsn == end, (lsn, end)
        mtr_start = self.end_lsn
        self.lsn = self.end_lsn = end
        return mtr_start, end

    def _check_capacity(self, start: int, end: int) -> None:
        """Refuse to write ``[start, end)`` over redo newer than the last checkpoint (the
        writer's own guard behind the engine's log free check; InnoDB only printed "the age
        of the last checkpoint ... exceeds the log group capacity" and overwrote)."""
        if end - (self.checkpoint_lsn - self.checkpoint_lsn % BLOCK) > self.capacity - BLOCK:
            raise LogFull(f"mtr [{start}, {end}) would overwrite redo newer than checkpoint "
                          f"{self.checkpoint_lsn} (log capacity {self.capacity} bytes)")

    def _new_block(self, block_lsn: int) -> None:
        assert block_lsn == self.buf_start + len(self.buf), (block_lsn, self.buf_start)
        blk = bytearray(BLOCK)
        put_u32(blk, LOG_BLOCK_HDR_NO, block_no(block_lsn)
                | (LOG_BLOCK_RUN_START_MASK if self._run_start else 0))
        self._run_start = False
        put_u16(blk, LOG_BLOCK_HDR_DATA_LEN, LOG_BLOCK_HDR_SIZE)
        self.buf += blk

    # -- writing -------------------------------------------------------------------------------------
    def write_up_to(self, lsn: int, flush: bool = True) -> None:
        """Write the log buffer to the file so that it covers ``lsn``; fsync when ``flush``.

        As log_write_up_to: writes everything buffered (not just up to ``lsn``), rewriting the
        last partial block (never a durable one: after an fsync the block is closed).  An fsync
        always covers the whole buffer, also when ``lsn`` was already written (written with
        ``flush=False`` at a flush_log_at_trx_commit=2 commit, more appended since).
        O(bytes written).
        """
        assert lsn <= self.lsn, (lsn, self.lsn)
        if self.lsn > self.written_lsn and \
                (lsn > self.written_lsn or (flush and lsn > self.flushed_lsn)):
            self._write_buffer()
        if flush and lsn > self.flushed_lsn:
            self.file.fsync()
            self.stats["log_fsyncs"] += 1
            self.flushed_lsn = self.written_lsn
            if self.lsn % BLOCK:
                self._close_block()
        assert self.flushed_lsn <= self.written_lsn <= self.lsn

    def _close_block(self) -> None:
        """Never rewrite a durable block: once a partial block is fsynced, the next mtr starts
        in the next block and the rest of this one stays unused (its data length marks the
        end).  Classic InnoDB rewrites the last partial block in place, which is unsafe where
        a torn write can destroy a sector's old contents (device ``nonatomic512``); padding
        costs up to one block of log per fsync instead.  O(1)."""
        assert self.written_lsn == self.lsn and len(self.buf) == BLOCK, (self.lsn, len(self.buf))
        self.lsn = self.written_lsn = self.flushed_lsn = self.lsn - self.lsn % BLOCK + BLOCK
        self.buf_start = self.lsn
        self.buf = bytearray()
        self._run_start = True

    def _write_buffer(self) -> None:
        if not self.buf:
            return
        ckno = self.next_checkpoint_no & 0xFFFFFFFF
        for bi in range(0, len(self.buf), BLOCK):
            put_u32(self.buf, bi + LOG_BLOCK_CHECKPOINT_NO, ckno)
            put_u32(self.buf, bi + LOG_BLOCK_CHECKSUM, block_checksum(self.buf[bi:bi + BLOCK]))
        # one pwrite per contiguous run of the circular file
        pos = 0
        while pos < len(self.buf):
            blsn = self.buf_start + pos
            off = self.offset_of(blsn)
            run = min(len(self.buf) - pos, self.file_size - off)
            self.file.pwrite(bytes(self.buf[pos:pos + run]), off)
            self.stats["log_writes"] += 1
            pos += run
        lap = self._lap_of(self.buf_start + len(self.buf) - BLOCK)
        if lap > self._lap:             # the log wrapped: this write began a new lap
            self.counters["log_wraps"] += lap - self._lap
            self._lap = lap
        self.written_lsn = self.lsn
        # keep only the block that is still being filled
        keep_from = self.lsn - self.lsn % BLOCK
        del self.buf[:keep_from - self.buf_start]
        self.buf_start = keep_from
        if self.lsn % BLOCK == 0:
            assert not self.buf

    def write_checkpoint(self, lsn: int) -> None:
        """Write checkpoint number ``next_checkpoint_no`` at ``lsn`` to its slot and fsync.

        Pre-conditions (log_checkpoint): the log is durable up to ``lsn`` and every page change
        older than ``lsn`` is durable in the data files.
        """
        assert self.checkpoint_lsn <= lsn <= self.flushed_lsn, \
            (self.checkpoint_lsn, lsn, self.flushed_lsn)
        no = self.next_checkpoint_no
        blsn = lsn - lsn % BLOCK
        if self.lsn > self.written_lsn:
            self._write_buffer()        # the fsync below makes it durable: write it all first
        self.file.pwrite(encode_checkpoint(no, lsn, self.offset_of(blsn)),
                         checkpoint_slot_for(no))
        self.file.fsync()
        self.stats["log_fsyncs"] += 1
        self.stats["checkpoints"] += 1
        self.flushed_lsn = self.written_lsn
        self.checkpoint_lsn = lsn
        self.checkpoint_no = no
        self.next_checkpoint_no = no + 1
        # blocks written from now on carry the new checkpoint number: they start a new run
        # (the scanner accepts a change of number inside a run only at a flagged block)
        if self.lsn % BLOCK:
            self._close_block()
        self._run_start = True


# -- the reader (recovery) ---------------------------------------------------------------------
def read_checkpoints(file) -> list[Checkpoint]:
    """Valid checkpoints in both slots, newest (highest number) first."""
    out = []
    for slot in (LOG_CHECKPOINT_1, LOG_CHECKPOINT_2):
        c = decode_checkpoint(file.pread(BLOCK, slot), slot)
        if c is not None:
            out.append(c)
    return sorted(out, key=lambda c: -c.no)


@dataclass
class ParsedMtr:
    start_lsn: int
    end_lsn: int
    records: list[RedoRecord]


@dataclass
class ScanResult:
    checkpoint: Checkpoint
    scanned_lsn: int          # end of the valid log blocks
    recovered_lsn: int        # end of the last complete mtr
    mtrs: list[ParsedMtr]
    stop: str                 # the named condition that ended the scan
    blocks: int


def misplaced_block(blk: bytes, block_lsn: int, capacity: int) -> bool:
    """Whether ``blk``, read where the block of ``block_lsn`` belongs, is a checksum-valid block
    that belongs at another offset: its number is not the expected one, nor one a whole number
    of laps (``capacity`` bytes of data area) older.  The writer puts the block of LSN L only
    where L maps to, so only a misdirected write leaves one of these."""
    if len(blk) != BLOCK or u32(blk, LOG_BLOCK_CHECKSUM) != block_checksum(blk):
        return False
    older = blocks_between(block_no(block_lsn), u32(blk, LOG_BLOCK_HDR_NO) & LOG_BLOCK_NO_MASK)
    return older % (capacity // BLOCK) != 0


def overrun_by(blk: bytes, block_lsn: int, capacity: int) -> int:
    """How many bytes of LSN newer than ``block_lsn`` the block ``blk`` read where the block
    of ``block_lsn`` belongs is, when it is a checksum-valid block a whole number of laps
    (``capacity`` bytes of data area) newer; else 0.  Only a writer that went round the file
    past its checkpoint leaves one (the invariant the log free check keeps; MySQL #69477)."""
    if len(blk) != BLOCK or u32(blk, LOG_BLOCK_CHECKSUM) != block_checksum(blk):
        return 0
    newer = blocks_between(u32(blk, LOG_BLOCK_HDR_NO) & LOG_BLOCK_NO_MASK, block_no(block_lsn))
    if 0 < newer < LOG_BLOCK_NO_MASK // 2 and newer % (capacity // BLOCK) == 0:
        return newer * BLOCK
    return 0


def _block_problem(blk: bytes, block_lsn: int, prev_ckno: int | None) -> str | None:
    """Why the scan cannot use ``blk`` as the block at ``block_lsn`` (a STOP_* name), or None."""
    if len(blk) != BLOCK or (u32(blk, LOG_BLOCK_HDR_NO) & LOG_BLOCK_NO_MASK) != \
            block_no(block_lsn):
        return STOP_BLOCK_NUMBER
    if u32(blk, LOG_BLOCK_CHECKSUM) != block_checksum(blk):
        return STOP_CHECKSUM
    data_len = u16(blk, LOG_BLOCK_HDR_DATA_LEN)
    if data_len < LOG_BLOCK_HDR_SIZE or data_len > BLOCK or \
            LOG_BLOCK_CHECKSUM < data_len < BLOCK:
        return STOP_DATA_LEN
    ckno = u32(blk, LOG_BLOCK_CHECKPOINT_NO)
    if prev_ckno is not None and ckno != prev_ckno and \
            ((prev_ckno - ckno) & 0xFFFFFFFF) < 0x80000000:
        return STOP_STALE
    return None


PARSE_CACHE_BYTES = 1 << 20     # payload bytes whose parse parse_run keeps (per process)
# (parse function, payload bytes) -> parse_run's result
_parsed = BoundedCache(PARSE_CACHE_BYTES, size=lambda key: len(key[1]))


def parse_run(payload) -> tuple[tuple, str | None]:
    """Parse the payload of one run of log blocks from its start, mtr after mtr, with
    :func:`parse_mtr`: ``(((records, end position), ...), failure)``, ``failure`` the message
    of the RedoParseError that stopped the parse, or None when it stopped at an incomplete mtr
    (the end, or a tail a crash cut).  O(payload) the first time.

    Every crash state of a workload scans much the same log, so results are kept, keyed by
    the payload's bytes and by the ``parse_mtr`` function itself (at most PARSE_CACHE_BYTES
    of payload, the oldest dropped first): ``parse_mtr`` is a seam a mutant replaces
    (campaigns.mutants), and a replaced one is asked about every payload it has not parsed.
    A seam must be a pure function of its input for that, as both are.  Records are frozen,
    so they are shared; any other exception propagates and nothing is kept.
    """
    fn = parse_mtr
    data = bytes(payload)
    key = (fn, data)
    hit = _parsed.get(key)
    if hit is not None:
        return hit
    out = []
    failure = None
    pos = 0
    while True:
        try:
            got = fn(payload, pos)
        except RedoParseError as e:
            failure = str(e)
            break
        if got is None:
            break
        recs, end = got
        out.append((tuple(recs), end))
        pos = end
    res = (tuple(out), failure)
    _parsed.put(key, res)
    return res


def clear_parse_cache() -> None:
    """Drop every kept parse (for tests and benchmarks: the cache is never stale)."""
    _parsed.clear()


def check_checkpoint_offset(ckpt: Checkpoint, file_size: int) -> None:
    """The offset a checkpoint names for its block must be a block of the data area.

    Raises:
        RecoveryError: it is not (a checkpoint written by another program or for another log
            size: its checksum holds, so it is no torn write).
    """
    if ckpt.offset % BLOCK or not LOG_FILE_HDR_SIZE <= ckpt.offset < file_size:
        raise RecoveryError(
            f"checkpoint {ckpt.no} (LSN {ckpt.lsn}) names log file offset {ckpt.offset}, not a "
            f"block of the data area [{LOG_FILE_HDR_SIZE}, {file_size}) of this log")


def scan(file, file_size: int, ckpt: Checkpoint) -> ScanResult:
    """Scan from ``ckpt`` to the end of the valid log and parse complete mtrs
    (recv_scan_log_recs + recv_parse_log_recs).  O(redo bytes).

    Raises:
        RecoveryError: the log ends before the checkpoint LSN, a checksum-valid block holds
            bytes that do not parse as redo records, or a checksum-valid block sits where
            another block belongs (a misdirected write, see :func:`misplaced_block`), or the
            checkpoint names an offset outside the data area (:func:`check_checkpoint_offset`).
    """
    capacity = file_size - LOG_FILE_HDR_SIZE
    block_lsn = ckpt.lsn - ckpt.lsn % BLOCK
    check_checkpoint_offset(ckpt, file_size)
    anchor = (block_lsn, ckpt.offset)
    first_off = ckpt.lsn % BLOCK
    # the payload in runs of contiguous blocks: a partial block ends a run (the writer never
    # rewrites a durable block, so after an fsync of a partial block it starts the next one)
    chunks: list[tuple[int, bytearray]] = [(ckpt.lsn, bytearray())]
    prev_ckno = None
    scanned = ckpt.lsn
    stop = STOP_WRAP
    nblocks = 0
    after_partial = False
    for _ in range(capacity // BLOCK):
        off = data_offset(*anchor, block_lsn, capacity)
        blk = file.pread(BLOCK, off)
        why = _block_problem(blk, block_lsn, prev_ckno)
        ahead = overrun_by(blk, block_lsn, capacity) if why == STOP_BLOCK_NUMBER else 0
        if ahead:
            raise RecoveryError(
                f"the log block at LSN {block_lsn} (file offset {off}) was overwritten by the "
                f"block of LSN {block_lsn + ahead}, a later lap: the log overwrote redo newer "
                f"than the checkpoint {ckpt.lsn} (number {ckpt.no}; unless a newer checkpoint "
                f"was lost)")
        if why == STOP_BLOCK_NUMBER and misplaced_block(blk, block_lsn, capacity):
            raise RecoveryError(
                f"the log block at LSN {block_lsn} (file offset {off}) holds the valid block "
                f"number {u32(blk, LOG_BLOCK_HDR_NO) & LOG_BLOCK_NO_MASK} of another place in "
                f"the log: a misdirected write destroyed redo the scan needs")
        if why is not None:
            # after a partial block, a block never written (or from an older lap) is the end
            stop = STOP_END if after_partial and why == STOP_BLOCK_NUMBER else why
            break
        data_len = u16(blk, LOG_BLOCK_HDR_DATA_LEN)
        ckno = u32(blk, LOG_BLOCK_CHECKPOINT_NO)
        run_start = bool(u32(blk, LOG_BLOCK_HDR_NO) & LOG_BLOCK_RUN_START_MASK)
        if nblocks and not run_start and (after_partial or ckno != prev_ckno):
            # a run continues only in blocks of the same write epoch; a block after a partial
            # one, or of another checkpoint number, that does not start a run was left by an
            # earlier (crashed) run of the writer: it is not part of this log
            stop = STOP_END if after_partial else STOP_STALE
            break
        prev_ckno = ckno
        nblocks += 1
        lo = max(LOG_BLOCK_HDR_SIZE, first_off) if nblocks == 1 else LOG_BLOCK_HDR_SIZE
        hi = min(data_len, LOG_BLOCK_CHECKSUM)
        if nblocks == 1 and first_off and data_len < first_off:
            raise RecoveryError(f"the log block at the checkpoint LSN {ckpt.lsn} holds only "
                                f"{data_len} bytes: the log ends before the checkpoint")
        if nblocks > 1 and run_start:
            chunks.append((block_lsn, bytearray()))
        if hi > lo:
            chunks[-1][1].extend(blk[lo:hi])
        after_partial = data_len < BLOCK
        scanned = block_lsn + data_len if after_partial else block_lsn + BLOCK
        block_lsn += BLOCK
    else:
        stop = STOP_END if after_partial else STOP_WRAP
    if nblocks == 0 and first_off:
        raise RecoveryError(f"no valid log block at the checkpoint LSN {ckpt.lsn} ({stop})")
    mtrs = []
    for k, (start, payload) in enumerate(chunks):
        pos = 0
        # the first mtr of a later run starts (by LSN) where the last complete one ended
        prev_end = mtrs[-1].end_lsn if mtrs else ckpt.lsn
        parsed, failure = parse_run(payload)
        for recs, end in parsed:
            mtrs.append(ParsedMtr(prev_end if pos == 0 and k else lsn_add(start, pos),
                                  lsn_add(start, end), list(recs)))
            pos = end
        if failure is not None:
            raise RecoveryError(f"redo log corrupt after LSN {lsn_add(start, pos)}: {failure}")
    recovered = mtrs[-1].end_lsn if mtrs else ckpt.lsn
    return ScanResult(ckpt, max(scanned, recovered), recovered, mtrs, stop, nblocks)
