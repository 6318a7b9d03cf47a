from xmodal.engine.checkpoint import (
    AtomicLocalBackend,
    CheckpointError,
    load_checkpoint_file,
    load_weights,
    resolve_checkpoint,
    save_checkpoint_file,
)
from xmodal.engine.dual_head_combiner import DualHeadCombinerHook, search_combiner
from xmodal.engine.hooks import EpochHistoryHook, ProgressBarHook, RNGStateHook, StudentExportHook
from xmodal.engine.optim_wrapper import CPUBf16OptimWrapper

__all__ = [
    "AtomicLocalBackend",
    "CPUBf16OptimWrapper",
    "CheckpointError",
    "DualHeadCombinerHook",
    "EpochHistoryHook",
    "ProgressBarHook",
    "RNGStateHook",
    "StudentExportHook",
    "load_checkpoint_file",
    "load_weights",
    "resolve_checkpoint",
    "save_checkpoint_file",
    "search_combiner",
]
