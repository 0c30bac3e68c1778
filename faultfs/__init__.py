"""faultfs: a fault-injecting simulated disk.  Knows nothing of databases.

Public surface: the VFS protocol (:class:`VFS`, :class:`VFSFile`), :class:`OsVFS`,
:class:`SimDisk` with its :class:`Trace`, device profiles, and crash states
(:class:`CrashPlan`, :class:`CrashStateBuilder`).
"""
from tornpage.faultfs.crash import (Choice, CrashPlan, CrashPlanError, CrashStateBuilder, DROP, KEEP, SIZE_ONLY,
                           TEAR, pending_ops, tear_units)
from tornpage.faultfs.devices import DEFAULT_DEVICE, DEVICES, DeviceProfile, UnknownDevice, get_device
from tornpage.faultfs.media import FaultSpec, InjectedIOError, MediaFaultError
from tornpage.faultfs.simdisk import Image, OpBudgetExceeded, SimDisk, SimFile
from tornpage.faultfs.trace import Marker, MediaFault, Trace, Write
from tornpage.faultfs.vfs import VFS, OsVFS, VFSFile

__all__ = [
    "VFS", "VFSFile", "OsVFS", "SimDisk", "SimFile", "OpBudgetExceeded", "Image", "Trace",
    "Marker", "Write",
    "DeviceProfile", "DEVICES", "DEFAULT_DEVICE", "UnknownDevice", "get_device",
    "Choice", "CrashPlan", "CrashPlanError", "CrashStateBuilder", "KEEP", "DROP", "TEAR", "SIZE_ONLY",
    "pending_ops", "tear_units", "FaultSpec", "InjectedIOError", "MediaFaultError",
    "MediaFault",
]
