"""Read views: which transactions' changes a consistent read sees (read/read0types.h ReadView,
read0read.cc; simplified).

A view is taken when a transaction needs a snapshot: at its first consistent read with
REPEATABLE READ (kept until it ends), at every statement with READ COMMITTED.  It records

    low_limit_id   the next trx id at creation: ids >= it started later, invisible
    up_limit_id    the smallest id active at creation (low_limit_id if none): ids below it
                   had committed or rolled back, visible
    ids            the ids active at creation (the creator excluded), invisible
    creator        the transaction that owns the view: its own changes are visible
    low_limit_no   the next trx_no at creation: every transaction committed before the view
                   has a smaller trx_no, so purge may remove undo of trx_no < low_limit_no
                   once no older view is open (trx0purge.cc purge_sys.view)

Trx ids and commit numbers (trx_no) come from one counter (trx_sys.max_trx_id), as in InnoDB,
so a transaction committed before a view was taken has trx_no < low_limit_no.
"""
from __future__ import annotations

from dataclasses import dataclass

READ_COMMITTED = "READ-COMMITTED"
REPEATABLE_READ = "REPEATABLE-READ"
ISOLATION_LEVELS = (REPEATABLE_READ, READ_COMMITTED)


@dataclass(frozen=True)
class ReadView:
    low_limit_id: int
    up_limit_id: int
    ids: frozenset
    creator: int
    low_limit_no: int

    @classmethod
    def open(cls, next_id: int, active_ids, creator: int) -> "ReadView":
        """A view of now: ``next_id`` the next trx id (and trx_no), ``active_ids`` the ids of
        transactions not yet committed or rolled back, ``creator`` the owner (0: none, as
        purge's view)."""
        ids = frozenset(i for i in active_ids if i != creator)
        return cls(next_id, min(ids, default=next_id), ids, creator, next_id)

    def changes_visible(self, trx_id: int) -> bool:
        """Whether a record version written by ``trx_id`` is visible (ReadView::changes_visible)."""
        if trx_id < self.up_limit_id or trx_id == self.creator:
            return True
        if trx_id >= self.low_limit_id:
            return False
        return trx_id not in self.ids

    def _check(self) -> None:
        assert self.up_limit_id <= self.low_limit_id
        assert all(self.up_limit_id <= i < self.low_limit_id for i in self.ids)
        assert self.creator not in self.ids


def oldest(views, now: ReadView) -> ReadView:
    """Purge's view: a copy of the oldest open view without a creator (its own changes are not
    visible to anyone else), or ``now`` when no view is open (MVCC::clone_oldest_view)."""
    views = list(views)
    if not views:
        return now
    v = min(views, key=lambda v: (v.low_limit_no, v.low_limit_id))
    ids = v.ids | ({v.creator} if 0 < v.creator < v.low_limit_id else frozenset())
    return ReadView(v.low_limit_id, min(ids, default=v.low_limit_id), frozenset(ids), 0,
                    v.low_limit_no)
