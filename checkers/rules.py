"""The checkers' rules: every check that can fail a crash state has a stable id.

A rule id is short and dotted, ``<where>.<what>``: ``fsck.*`` the structural checker
(checkers/structure.py), ``oracle.*`` the committed-state oracle (checkers/oracle.py),
``engine.*`` the engine failing while it recovers or is checked, ``recovery.*`` recovery
properties, ``workload.*`` what went wrong while the workload ran (campaigns/crashcheck.py).
A finding's signature is its kind and its rule id (``Verdict.signature``), so findings of one
bug group together however their messages differ, and two checks never merge because their
messages happen to start alike.

:data:`RULES` lists them all (id → one line saying what failed); an id, once released, keeps
its meaning (artifacts and CI reports store it).  Every id has a test that makes exactly that
rule fire (tests/test_rules.py, which fails for an id without one).
"""
from __future__ import annotations

RULES: dict[str, str] = {
    # -- structural checker: page images (right after recovery, and again when quiesced) --------
    "fsck.page_checksum": "a used page's checksum (header or trailer) does not match its bytes",
    "fsck.page_torn": "a used page's trailer LSN disagrees with its page LSN (torn write)",
    "fsck.page_zero": "a page the FSP bitmap marks used is all zeros (or past the end of file)",
    "fsck.page_short": "a page the FSP bitmap marks used is cut short by the end of the file",
    "fsck.page_lsn_future": "a page on disk has a page LSN beyond the recovered end of the log",
    "fsck.pool_page_lsn_future": "a dirty page in the buffer pool has an LSN beyond the "
                                 "recovered end of the log",
    "fsck.page_misplaced": "a valid page on disk claims to be another page (misdirected write)",
    "fsck.orphan_file": "a tablespace file (.ibd) that no table of the recovered dictionary owns",
    "fsck.page_invalid": "page verification gave a result the checker does not know",
    # -- structural checker: B+trees (quiesced) ------------------------------------------------
    "fsck.btr_page_type": "a page reached in a B+tree is not an INDEX page",
    "fsck.btr_page_layout": "a B+tree page's record heap does not parse",
    "fsck.btr_order": "keys in a B+tree page are not strictly ascending",
    "fsck.btr_record_length": "a B+tree record has the wrong length for its page "
                              "(node pointer, secondary entry, leaf row)",
    "fsck.btr_level": "a B+tree child page's level is not its parent's level minus one",
    "fsck.btr_key_bounds": "a B+tree key lies outside the bounds its node pointers give",
    "fsck.btr_empty_nonleaf": "a non-leaf B+tree page holds no node pointer",
    "fsck.btr_sibling_link": "B+tree sibling links (next/prev) do not form the level's list "
                             "in key order",
    "fsck.btr_level_list_end": "a B+tree level's list is not terminated by FIL_NULL at both ends",
    "fsck.tree_page_free": "a page of a B+tree is marked free in the FSP bitmap",
    "fsck.page_leak": "a table's page is marked used in the FSP bitmap but is in no tree",
    # -- structural checker: transactions, undo, purge, secondary index (quiesced) -------------
    "fsck.trx_active_left": "a transaction is still ACTIVE after background rollback finished",
    "fsck.history_not_empty": "the history list still holds undo logs after a full purge "
                              "with no read view open",
    "fsck.rseg_slot_in_use": "a rollback-segment undo slot is in use with no active transaction",
    "fsck.undo_page_leak": "a system tablespace page is marked used but no undo log owns it",
    "fsck.delete_marked_after_purge": "a clustered index row is still delete-marked after a "
                                      "full purge",
    "fsck.sec_delete_marked_after_purge": "a secondary index entry is still delete-marked after "
                                          "a full purge",
    "fsck.sec_index_missing_entry": "a row has no entry (k, id) in its table's secondary index",
    "fsck.sec_index_extra_entry": "a secondary index entry (k, id) matches no row",
    "fsck.engine_error": "the engine raised an error while the structural checker read the "
                         "recovered database",
    # -- committed-state oracle -----------------------------------------------------------------
    "oracle.durable_commit_lost": "the recovered state is an older committed prefix that lacks "
                                  "commits promised to survive",
    "oracle.uncommitted_visible": "a recovered row holds a value no commit before the crash "
                                  "wrote",
    "oracle.partial_transaction": "a transaction is half applied: some of its final writes "
                                  "recovered, others not",
    "oracle.no_committed_prefix": "the recovered state is no committed prefix (e.g. a later "
                                  "commit present, an earlier one absent)",
    # -- XA: transactions found PREPARED after recovery, and their resolution ----------------
    "oracle.xa_prepared_lost": "a transaction whose prepare was promised to survive, and not "
                               "being resolved, is not PREPARED after recovery",
    "oracle.xa_prepared_unexpected": "a transaction is PREPARED after recovery that never "
                                     "began to prepare, or whose resolution was promised",
    "oracle.xa_prepared_changed": "a transaction PREPARED after recovery does not hold the "
                                  "writes it prepared",
    "oracle.xa_prepared_unlocked": "another transaction could lock a row a transaction "
                                   "PREPARED after recovery wrote",
    "oracle.xa_commit_lost": "XA COMMIT of a recovered prepared transaction did not make all "
                             "its writes visible",
    "oracle.ddl_lost": "an acknowledged CREATE, DROP or RENAME TABLE is undone after recovery",
    "oracle.ddl_load_lost": "a table DDL made lacks rows of its load, whose commit was promised "
                            "to survive, or holds only part of it",
    "oracle.ddl_table_rows_wrong": "a table DDL made holds a row or value its load never "
                                   "wrote",
    "oracle.ddl_not_atomic": "the recovered tables are no state the DDL statements pass "
                             "through (a statement half done, or a table no DDL made)",
    "oracle.xa_rollback_visible": "XA ROLLBACK of a recovered prepared transaction left rows "
                                  "changed",
    # -- the campaign's own verdicts (campaigns/crashcheck.py) ----------------------------------
    "engine.hang": "recovery, or the work after it, made more file system calls than the "
                   "crash state's budget allows without finishing (a hang)",
    "engine.refused": "recovery refused to open the database (RecoveryError or Corruption)",
    "engine.unexpected_error": "recovery raised an exception other than RecoveryError or "
                               "Corruption",
    "engine.background_corruption": "background rollback or work after recovery raised an "
                                    "engine error",
    "engine.background_error": "background rollback or work after recovery raised an "
                               "exception that is no engine error",
    "engine.check_error": "the engine raised an unexpected exception while the recovered "
                          "database was checked",
    "recovery.not_idempotent": "a crash during recovery, then recovery again, gave another "
                               "state than the uninterrupted recovery",
    "recovery.new_work_lock_ignored": "a new transaction locked a row a resurrected "
                                      "transaction still held during background rollback",
    "recovery.new_work_dirty_read": "a consistent read during background rollback saw a row "
                                    "value that is not committed",
    "recovery.new_work_lost": "a transaction committed during background rollback lost "
                              "writes once rollback finished",
    "workload.read_anomaly": "a consistent read during the workload disagreed with the "
                             "snapshot model",
    "workload.engine_crashed": "the engine crashed (raised unexpectedly) during the workload",
    "workload.engine_stopped": "the engine stopped during the workload with no fault injected",
}


class Problem(str):
    """One problem a checker found: the message in words (the string itself, so callers that
    read problems as strings keep working) and the id of the rule it broke (``rule``)."""

    rule: str

    def __new__(cls, rule: str, message: str) -> "Problem":
        if rule not in RULES:
            raise ValueError(f"unknown rule {rule!r}: add it to checkers.rules.RULES")
        self = super().__new__(cls, message)
        self.rule = rule
        return self

    @property
    def message(self) -> str:
        return str.__str__(self)

    def __reduce__(self):
        return (Problem, (self.rule, self.message))

    def __repr__(self) -> str:
        return f"Problem({self.rule!r}, {self.message!r})"
