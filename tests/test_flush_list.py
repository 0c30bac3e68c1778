"""The flush list as InnoDB keeps it (engine.buf.FlushList): the normal path appends at the tail
in O(1) (buf_flush_insert_into_flush_list), recovery inserts sorted by oldest_modification
(buf_flush_insert_sorted_into_flush_list, the InnoDB Plugin 1.0.7 fix), and the list stays
ordered by (oldest_modification, space, page) across both, which ``_check`` asserts."""
from __future__ import annotations

import random

import pytest

from tornpage.campaigns.mutants import MUTANTS
from tornpage.engine import Engine, EngineConfig, buf
from tornpage.engine.buf import FlushList, Frame
from tornpage.engine.mtr import Mtr
from tornpage.faultfs import SimDisk

pytestmark = pytest.mark.timeout(60)

T = "t"
needs_asserts = pytest.mark.skipif(not __debug__, reason="_check asserts (python -O strips them)")


def _frames(oldest: list[int], space: int = 1) -> list[Frame]:
    """Dirty-looking frames of pages 0, 1, ... of ``space`` with these oldest_modification LSNs."""
    out = []
    for p, lsn in enumerate(oldest):
        f = Frame(space, p, bytearray())
        f.oldest_modification = f.newest_modification = lsn
        out.append(f)
    return out


def _by_key(frames: list[Frame]) -> list[Frame]:
    return sorted(frames, key=lambda f: (f.oldest_modification, f.space, f.page_no))


# -- the list on its own -----------------------------------------------------------------------

def test_appends_in_lsn_order_compute_no_sort_key(monkeypatch):
    """The normal path is a tail append: it never computes the sort key, however long the list
    (the sorted insert, the control, computes it for every frame)."""
    calls = [0]
    real = buf._flush_key

    def counting_key(f):
        calls[0] += 1
        return real(f)

    monkeypatch.setattr(buf, "_flush_key", counting_key)
    frames = _frames([8192 + 100 * i for i in range(2000)])
    fl = FlushList()
    for f in frames:
        fl.append(f)
    assert calls[0] == 0
    assert list(fl) == frames and len(fl) == 2000 and fl.first() is frames[0]
    fl._check()
    control = FlushList()
    for f in _frames([8192 + 100 * i for i in range(10)], space=2):
        control.insert_sorted(f)
    assert calls[0] >= 10


def test_recovered_pages_come_out_sorted_whatever_the_insert_order():
    rng = random.Random(11)
    frames = _frames([rng.randrange(8192, 1 << 30) for _ in range(500)])
    frames += _frames([frames[3].oldest_modification] * 3, space=0)   # ties: by space, page
    order = frames[:]
    rng.shuffle(order)
    fl = FlushList()
    for f in order:
        fl.insert_sorted(f)
    assert list(fl) == _by_key(frames)
    assert fl.first() is _by_key(frames)[0]
    fl._check()


def test_recovered_then_appended_then_removed():
    """Recovered pages first (sorted), then pages appended later at higher LSNs; removal from
    either run, and the head moves from the recovered run to the appended run."""
    rng = random.Random(5)
    recovered = _frames([rng.randrange(8192, 1 << 20) for _ in range(50)])
    appended = _frames([(1 << 20) + 64 * i for i in range(30)], space=2)
    fl = FlushList()
    for f in reversed(recovered):
        fl.insert_sorted(f)
    for f in appended:
        fl.append(f)
    expect = _by_key(recovered) + appended
    assert list(fl) == expect
    fl._check()
    for f in (expect[10], expect[0], expect[60], expect[-1], expect[50]):   # 50: appended[0]
        fl.remove(f)
        expect.remove(f)
        assert f not in fl
        assert list(fl) == expect and len(fl) == len(expect) and fl.first() is expect[0]
        fl._check()
    for f in [f for f in expect if f.space == 1]:                 # the recovered run empties
        fl.remove(f)
    assert fl.first() is appended[1]                              # the appended run's head
    assert list(fl) == [f for f in appended if f not in (appended[0], appended[10],
                                                         appended[-1])]
    with pytest.raises(ValueError):
        fl.remove(appended[0])                                    # removed already
    for f in list(fl):
        fl.remove(f)
    assert not fl and fl.first() is None and list(fl) == []


@needs_asserts
def test_check_catches_an_out_of_order_list():
    """An append that is not in LSN order (as bug 11's mutant does with recovered pages) breaks
    the invariant; ``_check`` says so, ``append`` itself does not look."""
    a, b = _frames([9000, 8500])
    fl = FlushList()
    fl.append(a)
    fl.append(b)                          # older than the tail: accepted, O(1), no comparison
    assert list(fl) == [a, b]
    with pytest.raises(AssertionError, match="oldest_modification order"):
        fl._check()
    # the junction of the runs: a recovered page newer than an appended one
    r, n = _frames([9000, 8500], space=3)
    fl = FlushList()
    fl.append(n)
    fl.insert_sorted(r)
    with pytest.raises(AssertionError, match="oldest_modification order"):
        fl._check()


# -- in the engine --------------------------------------------------------------------------------

def _cfg() -> EngineConfig:
    return EngineConfig(page_size=4096, buffer_pool_pages=64, log_file_size=1 << 20)


def _crash_image_with_dirty_pages():
    """A crash image whose redo since the checkpoint dirties pages in an order that is not
    page order, and leaves one transaction uncommitted (rolled back in the background)."""
    disk = SimDisk()
    eng = Engine.create(disk, _cfg())
    eng.create_table(T)
    t = eng.begin()
    for k in range(300):
        t.insert(T, k, b"a%d" % k * 8)
    t.commit()
    eng.make_checkpoint(flush=True)
    t = eng.begin()
    for k in range(299, 0, -7):
        t.update(T, k, b"b%d" % k * 9)
    t.commit()
    loser = eng.begin()
    for k in range(0, 300, 11):
        loser.update(T, k, b"loser")
    eng.log.write_up_to(eng.log.end_lsn, flush=True)      # the loser's redo is durable
    return disk.live_image()


def test_the_normal_path_appends_and_never_inserts_sorted(monkeypatch):
    def forbidden(self, f):
        raise AssertionError(f"sorted insert of {f} on the normal path")

    monkeypatch.setattr(FlushList, "insert_sorted", forbidden)
    disk = SimDisk()
    eng = Engine.create(disk, _cfg())
    eng.create_table(T)
    t = eng.begin()
    for k in range(200):
        t.insert(T, (k * 37) % 200, b"v" * 40)
    t.commit()
    assert len(eng.buf.flush_list) > 5
    eng._check()


def test_an_mtr_hands_its_pages_over_in_page_order(monkeypatch):
    """The pages of one mtr share its start LSN; they join the tail in page order, whatever
    order the mtr touched them in (so the list keeps its (LSN, space, page) order)."""
    touched = []
    real_commit = Mtr.commit

    def commit(self):
        touched.append(list(self.modified))
        real_commit(self)

    monkeypatch.setattr(Mtr, "commit", commit)
    disk = SimDisk()
    eng = Engine.create(disk, _cfg())
    eng.create_table(T)
    eng.make_checkpoint(flush=True)
    touched.clear()
    t = eng.begin()
    t.insert(T, 1, b"one")                # undo page, rollback segment, leaf in one mtr or more
    t.commit()
    assert any(keys != sorted(keys) for keys in touched)      # the test can fail
    ties: dict[int, list] = {}
    for f in eng.buf.flush_list:
        ties.setdefault(f.oldest_modification, []).append(f.key)
    assert any(len(keys) > 1 for keys in ties.values())
    assert all(keys == sorted(keys) for keys in ties.values())
    eng._check()


def test_recovery_inserts_sorted_then_rollback_appends_behind(monkeypatch):
    inserted = []
    real = FlushList.insert_sorted

    def insert_sorted(self, f):
        inserted.append(f)
        real(self, f)

    monkeypatch.setattr(FlushList, "insert_sorted", insert_sorted)
    eng = Engine.open(SimDisk(image=_crash_image_with_dirty_pages()), _cfg())
    order = [f.oldest_modification for f in inserted]
    assert order != sorted(order)                # redo apply goes in page order, not LSN order
    assert list(eng.buf.flush_list) == _by_key(inserted)
    assert eng.buf.oldest_modification() == min(order)
    eng._check()
    recovered_oldest = {f.key: f.oldest_modification for f in eng.buf.flush_list}
    n_inserted = len(inserted)
    # background rollback and new work dirty pages beyond the recovered LSN: appended behind,
    # while the recovered pages they change again keep their place and oldest_modification
    assert any(t.resurrected for t in eng.trx_sys.active.values())
    eng.finish_background_rollback()
    t = eng.begin()
    t.insert(T, 5000, b"new")
    t.commit()
    assert len(inserted) == n_inserted            # no sorted insert after recovery
    keys = [f.key for f in eng.buf.flush_list]
    recovered = [k for k in keys if k in recovered_oldest]
    assert keys[:len(recovered)] == recovered and len(keys) > len(recovered)
    assert all(f.oldest_modification >= eng.recovered_lsn
               for f in eng.buf.flush_list if f.key not in recovered_oldest)
    assert {f.key: f.oldest_modification for f in eng.buf.flush_list
            if f.key in recovered_oldest} == recovered_oldest
    assert any(eng.buf.frames[k].newest_modification > eng.recovered_lsn for k in recovered)
    eng._check()
    eng.buf.flush_all()                           # removal from both runs
    assert not eng.buf.flush_list and eng.buf.oldest_modification() == 0
    eng._check()


def test_bug_11s_mutant_appends_recovered_pages_unsorted():
    """Against this list, the mutant appends the recovered pages in page order, which
    ``_check`` reports; once the page cleaner has flushed from the head, the head is no longer
    the oldest page: a checkpoint taken from it would advance past unflushed pages."""
    image = _crash_image_with_dirty_pages()
    with MUTANTS["recovered-pages-appended-unsorted"].patch():
        eng = Engine.open(SimDisk(image=image), _cfg())
        oldest = [f.oldest_modification for f in eng.buf.flush_list]
        assert oldest != sorted(oldest)
        if __debug__:
            with pytest.raises(AssertionError, match="oldest_modification order"):
                eng.buf._check()
        wrong = False
        while eng.buf.flush_list and not wrong:
            eng.buf.flush_batch(1)
            wrong = eng.buf.oldest_modification() > min(
                (f.oldest_modification for f in eng.buf.flush_list), default=0)
        assert wrong
