"""``tools/catalogue.py``: docs/catalogue.md, the encoders, fusions, heads and task models a config can
name, with the input each takes and its arguments, generated from the registry so it stays current
(``--check`` fails when the page differs from what the registry holds)."""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

from xmodal.apis.config import registered_names
from xmodal.registry import MODELS

DOC = Path(__file__).resolve().parents[2] / "docs" / "catalogue.md"
SECTIONS = (("Encoders", r"xmodal\.models\.encoders\."),
            ("Fusions", r"xmodal\.models\.(fusion|mlp_fusion|bev\.fusion)$"),
            ("Heads", r"xmodal\.models\.(heads\.|bev\.centerpoint_head$)"),
            ("Task models", r"xmodal\.models\.(classifier|dual_head|dual_encoder|cross_encoder|fusenet|bev\.(detector|"
                            r"mmdet3d_detector))$"),
            ("BEV parts", r"xmodal\.models\.bev\.(lift_splat|pillars|backbone)$"))
HEADER = """# Catalogue: encoders, fusions, heads and task models

Generated from the registry by `python tools/catalogue.py` (a test fails when this page is out of
date). Each name is what a config writes as `type=`; *input* is what the module's forward takes
(B = batch size); *arguments* are its constructor's, with defaults. A `ModalityClassifier` fills in
a fusion's `in_dims` and a head's `in_dim` from its encoders' `out_dim`. Losses and distillers:
`docs/losses.md`.
"""


def input_of(cls: type) -> str:
    """The class's ``catalogue_input`` (what its forward takes, written for this page), else what its
    docstring's first line gives before the arrow."""
    if getattr(cls, "catalogue_input", None):
        return cls.catalogue_input
    first = (inspect.getdoc(cls) or "").split("\n", 1)[0]
    before = re.split(r"\s*(?:->|→)\s*", first, maxsplit=1)
    return before[0].rstrip(".") if len(before) == 2 else "see its docstring"


def arguments(cls: type) -> str:
    try:
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    except (TypeError, ValueError):
        return ""
    shown = []
    for p in params:
        if p.name in ("data_preprocessor", "init_cfg") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        shown.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    return ", ".join(shown)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def catalogue() -> str:
    registered_names(MODELS)  # imports every module the registry knows
    classes = {name: cls for name, cls in MODELS.module_dict.items() if inspect.isclass(cls)}
    parts = [HEADER]
    for title, pattern in SECTIONS:
        rows = [(name, cls) for name, cls in sorted(classes.items()) if re.match(pattern, cls.__module__)]
        if not rows:
            continue
        parts.append(f"\n## {title}\n\n| type | input | arguments | file |\n|---|---|---|---|\n")
        for name, cls in rows:
            file = cls.__module__.replace(".", "/") + ".py"
            parts.append(f"| `{name}` | {_cell(input_of(cls))} | `{_cell(arguments(cls))}` | `{file}` |\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write docs/catalogue.md from the registry.")
    parser.add_argument("--check", action="store_true", help="only check that the page is current (exit 1 if not)")
    args = parser.parse_args(argv)
    text = catalogue()
    if args.check:
        current = DOC.read_text() if DOC.is_file() else ""
        if current != text:
            print(f"{DOC} is out of date: run python tools/catalogue.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0
