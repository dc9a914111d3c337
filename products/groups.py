"""Connected groups of items from pairs of linked items (union-find): the polygons that are one
landslide, across block borders or across overlapping scenes."""

from __future__ import annotations

import numpy as np


def connected_groups(n: int, left: np.ndarray, right: np.ndarray) -> list[list[int]]:
    """The indices 0..n-1 grouped by the links (left[k], right[k]), transitively; each group in
    increasing order, groups ordered by their first index."""
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(left, right, strict=True):
        parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])
