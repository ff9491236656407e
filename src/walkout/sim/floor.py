"""Walkable-floor grid and shortest paths, so simulated shoppers never walk through shelves."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import dijkstra

from walkout.store.model import Store


def _inside(outline: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, vectorised over points."""
    x, y = pts[:, 0], pts[:, 1]
    inside = np.zeros(len(pts), dtype=bool)
    n = len(outline)
    for i in range(n):
        x0, y0 = outline[i]
        x1, y1 = outline[(i + 1) % n]
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < xc)
    return inside


@dataclass
class FloorGrid:
    """Occupancy grid of the floor (cell = ``res`` m) with gondolas inflated by a body radius."""

    store: Store
    res: float = 0.1
    clearance: float = 0.3
    origin: np.ndarray = field(init=False)
    shape: tuple[int, int] = field(init=False)
    free: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        outline = np.asarray(self.store.floor.outline, dtype=np.float64)
        lo, hi = outline.min(axis=0), outline.max(axis=0)
        self.origin = lo
        nx, ny = np.ceil((hi - lo) / self.res).astype(int)
        self.shape = (int(nx), int(ny))
        cx = lo[0] + (np.arange(nx) + 0.5) * self.res
        cy = lo[1] + (np.arange(ny) + 0.5) * self.res
        gx, gy = np.meshgrid(cx, cy, indexing="ij")
        pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
        free = _inside(outline, pts)
        # keep a body's width away from the outline walls too
        free &= (pts[:, 0] > lo[0] + 0.2) & (pts[:, 0] < hi[0] - 0.2)
        free &= (pts[:, 1] > lo[1] + 0.1) & (pts[:, 1] < hi[1] - 0.2)
        # gondolas and the walls of blind areas (fitting rooms: entered on purpose only)
        for box in [g.box for g in self.store.gondolas] + [b.box for b in self.store.blind_areas]:
            m = self.clearance
            blocked = (
                (pts[:, 0] > box.min[0] - m)
                & (pts[:, 0] < box.max[0] + m)
                & (pts[:, 1] > box.min[1] - m)
                & (pts[:, 1] < box.max[1] + m)
            )
            free &= ~blocked
        self.free = free.reshape(self.shape)
        self._graph = self._build_graph(self.free)

    def _build_graph(self, free: np.ndarray) -> csr_matrix:
        nx, ny = self.shape
        idx = np.arange(nx * ny).reshape(nx, ny)
        rows, cols, w = [], [], []
        for dx, dy in ((1, 0), (0, 1), (1, 1), (1, -1)):
            j0, j1 = max(0, -dy), ny - max(0, dy)
            a = idx[0 : nx - dx, j0:j1]
            b = idx[dx:nx, j0 + dy : j1 + dy]
            ok = free.ravel()[a.ravel()] & free.ravel()[b.ravel()]
            rows.append(a.ravel()[ok])
            cols.append(b.ravel()[ok])
            w.append(np.full(ok.sum(), np.hypot(dx, dy) * self.res))
        r, c, ww = np.concatenate(rows), np.concatenate(cols), np.concatenate(w)
        n = nx * ny
        return coo_matrix(
            (np.concatenate([ww, ww]), (np.concatenate([r, c]), np.concatenate([c, r]))),
            shape=(n, n),
        ).tocsr()

    def ij(self, xy: np.ndarray) -> np.ndarray:
        """Grid indices of the cell holding ``xy`` (clipped to the grid)."""
        ij = np.floor((np.asarray(xy) - self.origin) / self.res).astype(int)
        return np.clip(ij, 0, np.array(self.shape) - 1)

    def cell(self, xy: np.ndarray) -> int:
        """Index of the free cell nearest to ``xy``."""
        ij = self.ij(xy)
        if self.free[ij[0], ij[1]]:
            return int(ij[0] * self.shape[1] + ij[1])
        fi, fj = np.nonzero(self.free)
        k = int(np.argmin((fi - ij[0]) ** 2 + (fj - ij[1]) ** 2))
        return int(fi[k] * self.shape[1] + fj[k])

    def centre(self, cell: int) -> np.ndarray:
        i, j = divmod(cell, self.shape[1])
        return self.origin + (np.array([i, j]) + 0.5) * self.res

    def path(
        self, a: np.ndarray, b: np.ndarray, avoid: np.ndarray | None = None, radius: float = 0.5
    ) -> np.ndarray:
        """Shortest walkable polyline from ``a`` to ``b`` (ends included), shortcut-smoothed.

        ``avoid`` (k, 2) are people standing in the way: cells within ``radius`` of them are
        blocked too (except around the two ends), so the path goes round them.
        """
        free, graph = self.free, self._graph
        if avoid is not None and len(avoid):
            ci = self.origin[0] + (np.arange(self.shape[0]) + 0.5) * self.res
            cj = self.origin[1] + (np.arange(self.shape[1]) + 0.5) * self.res
            gx, gy = np.meshgrid(ci, cj, indexing="ij")
            near = np.zeros(self.shape, dtype=bool)
            for x, y in avoid:
                near |= (gx - x) ** 2 + (gy - y) ** 2 < radius**2
            for x, y in (a, b):
                near &= (gx - x) ** 2 + (gy - y) ** 2 > 0.3**2
            free = self.free & ~near
            graph = self._build_graph(free)
        ca, cb = self.cell(a), self.cell(b)
        _, pred = dijkstra(graph, indices=ca, return_predecessors=True, directed=False)
        cells = [cb]
        while cells[-1] != ca:
            p = int(pred[cells[-1]])
            if p < 0:
                raise ValueError(f"no walkable path from {a} to {b}")
            cells.append(p)
        pts = np.array([self.centre(c) for c in reversed(cells)])
        pts = np.vstack([np.asarray(a, float)[None], pts[1:-1], np.asarray(b, float)[None]])
        return self._shortcut(pts, free)

    def _visible(self, p: np.ndarray, q: np.ndarray, free: np.ndarray) -> bool:
        n = max(2, int(np.linalg.norm(q - p) / (self.res / 2)))
        s = p[None] + (q - p)[None] * np.linspace(0, 1, n)[:, None]
        ij = np.floor((s - self.origin) / self.res).astype(int)
        ij = np.clip(ij, 0, np.array(self.shape) - 1)
        return bool(free[ij[:, 0], ij[:, 1]].all())

    def _shortcut(self, pts: np.ndarray, free: np.ndarray) -> np.ndarray:
        out = [pts[0]]
        i = 0
        while i < len(pts) - 1:
            j = len(pts) - 1
            while j > i + 1 and not self._visible(pts[i], pts[j], free):
                j -= 1
            out.append(pts[j])
            i = j
        return np.array(out)
