from xmodal.engine.checkpoint import (
    AtomicLocalBackend,
    CheckpointError,
    load_checkpoint_file,
    load_weights,
    resolve_checkpoint,
    save_checkpoint_file,
)
from xmodal.engine.hooks import EpochHistoryHook, ProgressBarHook, RNGStateHook, StudentExportHook
from xmodal.engine.optim_wrapper import CPUBf16OptimWrapper
from xmodal.engine.unwrap import unwrap

__all__ = [
    "AtomicLocalBackend",
    "CPUBf16OptimWrapper",
    "CheckpointError",
    "EpochHistoryHook",
    "ProgressBarHook",
    "RNGStateHook",
    "StudentExportHook",
    "load_checkpoint_file",
    "load_weights",
    "resolve_checkpoint",
    "save_checkpoint_file",
    "unwrap",
]
