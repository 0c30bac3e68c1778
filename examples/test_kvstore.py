"""Crash tests of the example store (kvstore.py) with tornpage's pytest plugin.

    pytest examples/test_kvstore.py     # test_fixed_store passes, test_broken_store FAILS

test_broken_store fails on purpose: it is the demonstration (examples/ is not in the suite's
testpaths; tests/test_plugin.py runs this file with pytester and checks both outcomes).
"""
from tornpage import ack, begin

from kvstore import BrokenKVStore, KVStore


def workload(store_cls):
    """The operation: puts, an update, a delete, a compaction, a put after it.  Each change is
    announced (begin: a crash may keep or lose it) and acknowledged (ack) once the store's call
    returned, i.e. once the store promised it."""
    def operation(root):
        store = store_cls.open(root)

        def put(key, value):
            begin(key=key, value=value)
            if value is None:
                store.delete(key)
            else:
                store.put(key, value)
            ack(key=key, value=value)

        for i in range(3):
            put(f"k{i}", f"v{i}")
        put("k0", "v0-updated")
        put("k1", None)
        store.compact()
        put("k3", "v3")
        store.close()
    return operation


def recover(root):
    KVStore.open(root).close()


def check(root, promised):
    store = KVStore.open(root)
    for key, value in promised.items():
        assert store.get(key) in promised.allowed(key), \
            f"{key!r}: acknowledged {value!r}, recovered {store.get(key)!r}"
    store.close()


def test_fixed_store(crash_test):
    crash_test(workload(KVStore), recover, check, vfs_kind="pyfakefs")


def test_broken_store(crash_test):
    crash_test(workload(BrokenKVStore), recover, check, vfs_kind="pyfakefs")
