"""The config's text, formatted once per run instead of once per checkpoint.

mmengine's ``Runner.save_checkpoint`` stores ``cfg.pretty_text`` in every checkpoint, and that
property runs the yapf formatter each time: 0.8-0.9 s for a merged MST-Distill stage config on a CPU
core, which made checkpoint saving most of a cached stage-3 epoch (docs/benchmarks.md, profiling).
The config does not change while the Runner trains, so the text is computed on first use and kept.
"""

from __future__ import annotations

from mmengine.config import Config


class TextOnceConfig(Config):
    """A :class:`Config` whose ``pretty_text`` is formatted once and then reused."""

    @property
    def pretty_text(self) -> str:
        text = self.__dict__.get("_pretty_text_once")
        if text is None:
            text = super().pretty_text
            object.__setattr__(self, "_pretty_text_once", text)  # Config.__setattr__ writes config keys
        return text


def format_config_text_once(runner) -> None:
    """Make ``runner.cfg`` a :class:`TextOnceConfig` (same object, same contents)."""
    cfg = runner.cfg
    if type(cfg) is Config:
        object.__setattr__(cfg, "__class__", TextOnceConfig)  # Config.__setattr__ writes config keys
