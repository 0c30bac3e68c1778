"""engine: an InnoDB-style storage engine that does all its IO through the faultfs VFS protocol.

Public surface: :class:`Engine`, :class:`EngineConfig` and the typed errors.  Everything else is
one module per on-disk structure (page, fsp, btr_page, undo, trx_sys, log, dblwr) plus the
machinery that uses them (mtr, buf, btr, trx, recovery).
"""
from tornpage.engine.config import ConfigError, EngineConfig
from tornpage.engine.engine import Engine, EnginePanic
from tornpage.engine.errors import (Corruption, DuplicateKey, EngineError, EngineIOError, LockConflict, LogFull,
                           PageFromFuture, RecoveryError, TornPageUnrepairable, TrxStateError,
                           WatchdogExpired)

__all__ = ["Engine", "EngineConfig", "ConfigError", "EnginePanic", "EngineError",
           "EngineIOError", "LockConflict", "DuplicateKey", "TrxStateError", "Corruption", "PageFromFuture",
           "TornPageUnrepairable", "RecoveryError", "LogFull", "WatchdogExpired"]
