"""The bounded cache behind the engine's parse caches (btr_page's decoded record heaps, undo's
decoded record areas, log's parsed runs): a dict from keys that hold the bytes decoded to what
they decode to, bounded by those bytes, the oldest stored dropped first.  Keys are the bytes
themselves, so an entry is never stale and nothing is invalidated."""
from __future__ import annotations

from typing import Callable


class BoundedCache(dict):
    """A dict whose keys' bytes (``size(key)``, bytes) are kept at most ``limit``: :meth:`put`
    drops the oldest stored entries beyond it, keeping at least the newest.  ``nbytes`` is the
    keys' bytes held.  Plain item assignment does not count bytes: store with :meth:`put`."""

    def __init__(self, limit: int, size: Callable[[object], int] = len) -> None:
        super().__init__()
        self.limit = limit
        self.size = size
        self.nbytes = 0

    def put(self, key, value) -> None:
        """Store ``value`` under ``key`` as the newest entry, then drop the oldest entries while
        the bytes held exceed ``limit`` and more than one is held."""
        if key in self:
            del self[key]
            self.nbytes -= self.size(key)
        self[key] = value
        self.nbytes += self.size(key)
        while self.nbytes > self.limit and len(self) > 1:
            oldest = next(iter(self))
            del self[oldest]
            self.nbytes -= self.size(oldest)

    def clear(self) -> None:
        super().clear()
        self.nbytes = 0

    def accounting_problem(self) -> str | None:
        """None when ``nbytes`` is the keys' bytes and within ``limit`` (unless one entry alone
        exceeds it), else what is wrong (for the owners' ``_check_cache``)."""
        total = sum(self.size(k) for k in self)
        if total != self.nbytes or (total > self.limit and len(self) > 1):
            return f"holds {total} bytes, counts {self.nbytes}, at most {self.limit}"
        return None
