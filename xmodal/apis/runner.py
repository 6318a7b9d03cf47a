"""Runner assembly: the hooks every run gets whatever its config lists.

It lives above the distillers and the engine, so the engine's hooks need not know about the
distillers' teacher cache.
"""

from __future__ import annotations

from mmengine.config import Config
from mmengine.runner import Runner

from xmodal.distill.base import BaseDistiller
from xmodal.engine.config_text import format_config_text_once
from xmodal.engine.hooks import LabelBudgetHook, RNGStateHook
from xmodal.engine.nan_guard import NonFiniteLossGuard
from xmodal.engine.unwrap import unwrap
from xmodal.registry import HOOKS


def add_default_hooks(runner: Runner, cfg: Config) -> None:
    """Hooks every training run gets whatever its config lists: :class:`RNGStateHook` (exact resume),
    the non-finite loss guard (the config's ``nan_guard`` entry), :class:`LabelBudgetHook`
    (``labelled_ids.json``) and, for a distiller whose config switches ``teacher_cache`` on, the hook
    that builds the cache before training (the distiller's ``cache_hook``)."""
    format_config_text_once(runner)  # checkpoints store the config text; format it once, not per save
    if not any(isinstance(hook, RNGStateHook) for hook in runner.hooks):
        runner.register_hook(RNGStateHook())
    model = unwrap(runner.model)
    cache_hook = model.cache_hook if isinstance(model, BaseDistiller) and model.cache_enabled else None
    if cache_hook and not any(type(hook).__name__ == cache_hook for hook in runner.hooks):
        runner.register_hook(HOOKS.build(dict(type=cache_hook)))
    guard = NonFiniteLossGuard.from_config(cfg.get("nan_guard"))
    if guard is not None and not any(isinstance(hook, NonFiniteLossGuard) for hook in runner.hooks):
        runner.register_hook(guard)
    if not any(isinstance(hook, LabelBudgetHook) for hook in runner.hooks):
        runner.register_hook(LabelBudgetHook())
