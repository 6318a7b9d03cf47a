"""Runner assembly: the hooks every run gets whatever its config lists.

It lives above the distillers and the engine, so the engine's hooks need not know about the
distillers' teacher cache.
"""

from __future__ import annotations

from mmengine.config import Config
from mmengine.runner import Runner

from xmodal.distill.distiller_cache import DistillerCacheHook
from xmodal.engine.config_text import format_config_text_once
from xmodal.engine.hooks import RNGStateHook
from xmodal.engine.nan_guard import NonFiniteLossGuard
from xmodal.engine.unwrap import unwrap


def add_default_hooks(runner: Runner, cfg: Config) -> None:
    """Hooks every training run gets whatever its config lists: :class:`RNGStateHook` (exact resume),
    the non-finite loss guard (the config's ``nan_guard`` entry) and, for a Distiller with
    ``teacher_cache``, the hook that builds the cache before training."""
    format_config_text_once(runner)  # checkpoints store the config text; format it once, not per save
    if not any(isinstance(hook, RNGStateHook) for hook in runner.hooks):
        runner.register_hook(RNGStateHook())
    wants_cache = getattr(unwrap(runner.model), "cache_spec", None) is not None
    if wants_cache and not any(isinstance(hook, DistillerCacheHook) for hook in runner.hooks):
        runner.register_hook(DistillerCacheHook())
    guard = NonFiniteLossGuard.from_config(cfg.get("nan_guard"))
    if guard is not None and not any(isinstance(hook, NonFiniteLossGuard) for hook in runner.hooks):
        runner.register_hook(guard)
