"""Probes: counters of the recovery branches that fired (engine.stats), named for reports.

A campaign sums them over every crash state it recovered and fails when a branch it was meant to
reach never fired: a doublewrite test that silently never repaired a page proves nothing.
"""
from __future__ import annotations

from collections import Counter

# report name → (engine stat key, what it means)
PROBES: dict[str, tuple[str, str]] = {
    "doublewrite_repair": ("recv_dblwr_pages_restored",
                           "torn or zeroed data page restored from its doublewrite copy"),
    "doublewrite_copy_ignored_page_valid": ("recv_dblwr_page_valid_kept",
                                            "doublewrite copy present but the data page was valid"),
    "redo_applied": ("recv_records_applied", "redo record applied (start LSN >= page LSN)"),
    "redo_skipped_by_page_lsn": ("recv_records_skipped_page_lsn",
                                 "redo record skipped: the page was already newer"),
    "page_recreated_from_redo": ("recv_pages_init_from_redo",
                                 "unreadable or missing page rebuilt from its PAGE_INIT redo"),
    "trx_resurrected": ("recv_trx_resurrected", "ACTIVE transaction found in undo at recovery"),
    "background_rollback": ("trx_rolled_back_background",
                            "resurrected transaction rolled back in background steps"),
    "xa_prepared_recovered": ("recv_trx_prepared",
                              "PREPARED transaction found in undo at recovery (XA)"),
    "redo_scan_stopped_checksum": ("recv_scan_stop_checksum",
                                   "redo scan ended at a block with a bad checksum"),
    "redo_scan_stopped_stale_block": ("recv_scan_stop_stale-block",
                                      "redo scan ended at a block from an older epoch"),
    "redo_scan_stopped_block_number": ("recv_scan_stop_block-number",
                                       "redo scan ended at a block whose number does not match"),
    "redo_scan_stopped_partial_block": ("recv_scan_stop_end-of-log",
                                        "redo scan ended at the last, partial block"),
    "file_created_from_redo": ("recv_file_created",
                               "tablespace file whose MLOG_FILE_CREATE was durable but whose "
                               "creation was lost, created again by recovery"),
    "file_renamed_from_redo": ("recv_file_renamed",
                               "RENAME TABLE whose MLOG_FILE_RENAME was durable, finished by "
                               "recovery"),
    "file_deleted_from_redo": ("recv_file_deleted",
                               "dropped table's file unlinked by recovery (MLOG_FILE_DELETE)"),
    "redo_of_dropped_space_discarded": ("recv_records_dropped_space",
                                        "page redo of a dropped tablespace discarded (bug 19)"),
}

# what the workloads ran (counted by the campaign once per workload, from its settings and its
# engine's stats while it ran): name → (engine stat key, or "" for a setting, what it means)
WORKLOAD_PROBES: dict[str, tuple[str, str]] = {
    "trx_commit_mode_1": ("", "workload run with flush_log_at_trx_commit=1 (fsync at commit)"),
    "trx_commit_mode_2": ("", "workload run with flush_log_at_trx_commit=2 (write at commit)"),
    "trx_commit_mode_0": ("", "workload run with flush_log_at_trx_commit=0 (nothing at commit)"),
    "log_writer_flushes": ("bg_log_writer",
                           "background log writer step wrote and fsynced the log (modes 0, 2)"),
    "commit_acked_before_durable": ("trx_commit_acked_not_durable",
                                    "commit acknowledged before the log was fsynced to its LSN"),
    "ddl_statement": ("workload_ddl", "CREATE, DROP or RENAME TABLE run by the workload"),
    "log_wrapped": ("log_wraps",
                    "redo log write began a new lap of the circular log file (the log wrapped)"),
    "log_free_check_checkpoint": ("log_sync_checkpoints",
                                  "log free check before an mtr found the log nearly full: "
                                  "synchronous buffer pool flush and checkpoint"),
    "isolation_rr": ("", "workload run with REPEATABLE READ (one read view per transaction)"),
    "isolation_rc": ("", "workload run with READ COMMITTED (a read view per statement)"),
    "consistent_read_old_version": ("mvcc_versions_built",
                                    "consistent read built an older row version from undo"),
    "sec_index_delete_mark": ("sec_entries_delete_marked",
                              "secondary index entry delete-marked (k changed, or row deleted)"),
    "purge_removed_delete_marked_row": ("purge_del_marked_removed",
                                        "purge removed a delete-marked row no read view needed"),
    "purge_removed_sec_entry": ("purge_sec_entries_removed",
                                "purge removed a delete-marked secondary index entry"),
    "purge_waited_for_read_view": ("purge_blocked_by_read_view",
                                   "purge stopped at a history log an open read view needs"),
    "insert_over_delete_marked": ("insert_over_delete_marked",
                                  "insert reused a delete-marked record purge had not removed"),
    "xa_prepare": ("trx_prepared", "workload transaction XA PREPAREd"),
    "log_flushed_at_mtr_boundary": ("log_flushes_at_mtr_boundary",
                                    "log written and fsynced after an mtr commit, as a "
                                    "concurrent commit would (log_flush_every_mtrs)"),
    "lsn_crossed_2_32": ("", ("workload's LSN crossed 2**32 (an aged database: the page "
                              "trailer's low 32 bits of the LSN wrapped)")),
    "lsn_crossed_2_39": ("", ("workload's LSN crossed 2**39 (an aged database: log block "
                              "numbers wrapped)")),
    "trx_id_crossed_2_32": ("", "workload's transaction ids crossed 2**32 (an aged database)"),
    "btr_page_merge": ("btr_page_merges",
                       "B+tree page below the merge threshold merged into a sibling after a "
                       "delete (btr_compress)"),
    "btr_page_discard": ("btr_pages_discarded",
                         "emptied B+tree page discarded: unlinked, node pointer removed, freed "
                         "(btr_discard_page)"),
    "btr_tree_shrink": ("btr_tree_shrinks",
                        "B+tree root took its only child's records: the tree lost a level "
                        "(btr_lift_page_up)"),
}

# fault kinds injected (counted by the campaign from the crash plans, not by the engine)
FAULT_PROBES: dict[str, str] = {
    "fault_dropped": "pending operation lost by a crash",
    "fault_torn_old": "write torn; lost units kept their old contents",
    "fault_torn_zeros": "write torn; lost units read as zeros",
    "fault_torn_garbage": "write torn; lost units read as garbage",
    "fault_torn_inside_sector": "write torn inside a sector: its first bytes new, the rest old, "
                                "zeros or garbage (devices without atomic sectors)",
    "fault_size_only": "appending write: new size persisted, data not (no safe append)",
    "crash_during_recovery": "crash while recovering or rolling back after a crash",
    "purge_after_recovery": "undo log the crash left in a history list purged after recovery "
                            "(purge cut by the crash resumes)",
    "xa_resolved_commit": "transaction found PREPARED after recovery committed (XA COMMIT)",
    "xa_resolved_rollback": "transaction found PREPARED after recovery rolled back "
                            "(XA ROLLBACK)",
    "new_work_during_rollback": "new transactions ran while background rollback of "
                                "resurrected transactions was in progress",
    "new_work_lock_conflict": "a new transaction hit a row lock a resurrected transaction "
                              "held (expected)",
    "crash_after_new_work": "crash during recovery after new transactions ran during "
                            "background rollback",
    "ddl_table_rows_checked": "a table DDL made was recovered with rows, and its load checked",
    "media_bitflip": "a read returned one flipped bit (media faults)",
    "media_sector_error": "a latent sector error failed a read, and every later read of it",
    "media_eio_write": "a write failed with EIO",
    "media_enospc": "a file-extending write failed with ENOSPC",
    "media_eio_fsync": "an fsync failed with EIO; its writes stay pending forever",
    "media_misdirected": "a write was acknowledged but lost or put at another offset or in "
                         "another file",
    "media_bit_rot": "a bit decayed on the media when read: every later read and every crash "
                     "state after it sees the damage",
    "media_at_rest_corruption": "a write was acknowledged but stored with one bit wrong: every "
                                "later read and every crash state keeping it sees the damage",
    "lost_write_detected": "the engine's read-back after fsync caught a lost or misdirected "
                           "write and stopped it",
    "refused_on_misdirected_write": "recovery refused loudly on a range a misdirected write "
                                    "overwrote (accepted)",
    "engine_stopped_on_media_fault": "the engine stopped (refused) after a media fault",
    "refused_on_at_rest_corruption": "recovery refused loudly (or reported corruption) on data "
                                     "the media stored wrong (accepted)",
    "refused_on_media_error": "recovery refused loudly on an unreadable sector (accepted)",
}

# the branches the default campaign must reach (issue: doublewrite repair, redo skipped by page
# LSN, background rollback)
REQUIRED_DEFAULT = ("doublewrite_repair", "redo_skipped_by_page_lsn", "background_rollback",
                    "xa_prepared_recovered", "new_work_during_rollback")


def collect(stats) -> Counter:
    """Probe name → count from one engine's stats."""
    out: Counter = Counter()
    for name, (key, _) in PROBES.items():
        if stats.get(key):
            out[name] = stats[key]
    return out


def missing(totals: Counter, required) -> list[str]:
    """The required probes that never fired."""
    return [p for p in required if not totals.get(p)]
