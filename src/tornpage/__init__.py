"""tornpage: crash-consistency and recovery verification.

This is the whole public API; everything under ``tornpage.engine``, ``tornpage.faultfs``,
``tornpage.checkers`` and ``tornpage.campaigns`` is internal and may move between releases.

Crash-testing your own storage code (see docs/pytest-plugin.md)::

    import tornpage

    def test_put_survives_power_loss(crash_test):        # the pytest plugin's fixture
        def operation(vfs):
            tornpage.begin(key="a", value="1")
            my_store_put(vfs, "a", "1")                   # pwrite/fsync through ``vfs``
            tornpage.ack(key="a", value="1")
        def check(vfs, promised: tornpage.Promised):
            assert my_store_get(vfs, "a") in promised.allowed("a")
        crash_test(operation, check=check)

Names:
  :func:`crash_test`, :func:`ack`, :func:`begin`, :func:`mark`, :class:`Promised`,
  :class:`CrashConsistencyError`, :class:`CrashTestResult`: the crash-test API;
  :class:`SimDisk`: the traced in-memory disk; :class:`VFS`, :class:`VFSFile`, :class:`OsVFS`:
  the file-system protocol your code does its IO through;
  :data:`DEVICES`, :data:`DEFAULT_DEVICE`, :class:`DeviceProfile`, :func:`get_device`: the
  persistence models (sector size, atomic write unit, ordering, power loss or process kill);
  :data:`DEVICE_NAMES`: their names.
"""
from tornpage.campaigns.crashtest import (CrashConsistencyError, CrashTestResult, Promised, ack, begin,
                                          crash_test, mark)
from tornpage.faultfs.devices import DEFAULT_DEVICE, DEVICES, DeviceProfile, UnknownDevice, get_device
from tornpage.faultfs.simdisk import SimDisk
from tornpage.faultfs.vfs import VFS, OsVFS, VFSFile

DEVICE_NAMES: tuple[str, ...] = tuple(DEVICES)

__version__ = "0.1.0"

__all__ = [
    "crash_test", "ack", "begin", "mark", "Promised", "CrashConsistencyError", "CrashTestResult",
    "SimDisk", "VFS", "VFSFile", "OsVFS",
    "DEVICES", "DEVICE_NAMES", "DEFAULT_DEVICE", "DeviceProfile", "UnknownDevice", "get_device",
]
