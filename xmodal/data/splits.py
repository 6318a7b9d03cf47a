"""The rules every ``splits.json`` follows, shared by the file-based dataset readers and writers."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np


def is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def split_problems(splits: Mapping[str, object], count: int, item: str = "sample",
                   check: Callable[[int], str | None] | None = None) -> Iterator[tuple[str, str]]:
    """Yield ``(split, problem)`` for each rule a ``splits.json`` object breaks: every split a non-empty
    list of ``item`` ids in ``[0, count)``, no id twice (within or across splits), and ``check(id)``
    (a problem, or None) for each id."""
    owner: dict[int, str] = {}
    for name, ids in splits.items():
        if not isinstance(ids, list) or not all(is_int(i) for i in ids):
            yield name, f"expected a list of integer {item} ids"
            continue
        if not ids:
            yield name, "split is empty"
            continue
        for position, index in enumerate(ids):
            at = f"{item} id {index} at position {position}"
            if not 0 <= index < count:
                yield name, f"{at} is outside [0, {count - 1}]"
                break
            if index in owner:
                where = "twice in this split" if owner[index] == name else f"also in split {owner[index]!r}"
                yield name, f"{at} is {where}; splits must not overlap"
                break
            problem = check(index) if check is not None else None
            if problem:
                yield name, f"{at} {problem}"
                break
            owner[index] = name


def random_splits(n: int, fractions: tuple[float, float, float], rng: np.random.Generator,
                  drop_empty: bool = False) -> dict[str, list[int]]:
    """A seeded train/val/test split of ``n`` items for the embedded data sets: one permutation drawn from
    ``rng``, cut at the rounded ``fractions``, each split's ids sorted (``drop_empty``: leave out an empty
    split)."""
    order = rng.permutation(n)
    n_train, n_val = int(round(fractions[0] * n)), int(round(fractions[1] * n))
    parts = {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
    return {k: sorted(int(i) for i in v) for k, v in parts.items() if len(v) or not drop_empty}
