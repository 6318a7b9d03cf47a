"""No module of xmodal imports another module's private names or a private module from outside its package.

The layers themselves are checked by import-linter (``lint-imports``, pyproject.toml); this is the rule it
does not cover: what a module keeps private (a leading underscore) stays inside it, and a private module
(``_name.py``) stays inside its package. Shared helpers are made public where they are shared.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "xmodal"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) of every xmodal import in ``path``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "xmodal":
                found.append((node.lineno, target, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "xmodal"]
    return found


def _violations(path: Path) -> list[str]:
    module = _module_name(path)
    where = f"{path.relative_to(REPO)}"
    problems = []
    for line, target, names in _imports(path):
        parts = target.split(".")
        for i, part in enumerate(parts):
            owner = ".".join(parts[:i])  # the package a private module belongs to
            if _private(part) and not (module == owner or module.startswith(owner + ".")):
                problems.append(f"{where}:{line}: imports the private module {target}")
        for name in names:
            if _private(name) and target != module:
                problems.append(f"{where}:{line}: imports the private name {name} from {target}")
    return problems


def test_no_private_import_crosses_modules():
    problems = [p for path in sorted(PACKAGE.rglob("*.py")) for p in _violations(path)]
    assert not problems, "make the shared helper public where it is shared:\n" + "\n".join(problems)


def test_the_check_sees_a_private_import(monkeypatch):
    source = "from xmodal.data.retrieval import _as_int\nimport xmodal.distill.losses._hidden\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    problems = _violations(PACKAGE / "apis" / "probe.py")
    assert len(problems) == 2 and "private name _as_int" in problems[0] and "private module" in problems[1]
