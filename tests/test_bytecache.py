"""engine.bytecache.BoundedCache: the bound the engine's parse caches share."""
from __future__ import annotations

from tornpage.engine.bytecache import BoundedCache


def test_put_drops_the_oldest_entries_beyond_the_limit_keeping_the_newest():
    c = BoundedCache(10)
    c.put(b"aaaa", 1)
    c.put(b"bbbb", 2)
    assert c.nbytes == 8 and c.accounting_problem() is None
    c.put(b"aaaa", 3)                   # stored again: now the newest
    c.put(b"cccc", 4)                   # 12 bytes: the oldest, b"bbbb", goes
    assert list(c) == [b"aaaa", b"cccc"] and c[b"aaaa"] == 3 and c.nbytes == 8
    c.put(b"x" * 50, 5)                 # alone over the limit: kept, everything older goes
    assert list(c) == [b"x" * 50] and c.nbytes == 50 and c.accounting_problem() is None
    c.clear()
    assert not c and c.nbytes == 0


def test_the_accounting_check_fires_on_uncounted_bytes():
    c = BoundedCache(100, size=lambda key: len(key[1]))
    c.put((0, b"abc"), 1)
    assert c.accounting_problem() is None
    c[(1, b"defg")] = 2                 # stored past put: not counted
    assert c.accounting_problem() == "holds 7 bytes, counts 3, at most 100"
