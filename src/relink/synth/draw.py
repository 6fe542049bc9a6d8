"""Vectorised drawing on an axis-aligned millimetre canvas (numpy only).

The canvas is the chest frame of :mod:`.anatomy`, ``FOV_MM`` across. Being axis aligned, a shape
that depends on the row or the column only is computed on a 1-D vector and broadcast, and small shapes
are drawn inside their bounding box: one 64-px radiograph takes well under a millisecond. Rotation and
zoom are applied afterwards, once, by resampling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

FOV_MM = 400.0


@dataclass(frozen=True)
class Grid:
    size: int
    mpp: float  # millimetres per pixel
    xs: np.ndarray  # (1, size) column centres, mm
    ys: np.ndarray  # (size, 1) row centres, mm
    x1: np.ndarray  # the same centres as a flat vector
    y1: np.ndarray

    def index(self, mm: float) -> float:
        """Fractional pixel index of a coordinate (same for rows and columns)."""
        return (mm + FOV_MM / 2) / self.mpp - 0.5

    def span(self, lo: float, hi: float) -> slice:
        a = max(0, int(math.floor(self.index(lo))))
        b = min(self.size, int(math.ceil(self.index(hi))) + 1)
        return slice(a, max(a, b))


@lru_cache(maxsize=16)
def grid(size: int) -> Grid:
    mpp = FOV_MM / size
    c = ((np.arange(size, dtype=np.float32) + 0.5) * mpp - FOV_MM / 2).astype(np.float32)
    xs, ys = c.reshape(1, size), c.reshape(size, 1)
    xs.setflags(write=False)
    ys.setflags(write=False)
    return Grid(size, mpp, xs, ys, c.ravel(), c.ravel())


def clip01(a: np.ndarray) -> np.ndarray:
    """Clip a freshly computed array to [0, 1] in place (np.clip's dispatch is slow
    at these sizes)."""
    np.maximum(a, 0.0, out=a)
    np.minimum(a, 1.0, out=a)
    return a


def blob(layer: np.ndarray, g: Grid, cx: float, cy: float, rx: float, ry: float, amp: float,
         profile: str = "hard", reach: float = 1.0) -> None:
    """Add an ellipse. ``hard``: flat top, ~1 px edge; ``soft``: flat centre, wide
    edge; ``gauss``: a Gaussian with sigma ~ r/2 (drawn out to ``2 * reach * r``)."""
    rx, ry = max(rx, 0.6 * g.mpp), max(ry, 0.6 * g.mpp)
    ext = 2.0 * reach if profile == "gauss" else 1.0
    sy, sx = g.span(cy - ext * ry, cy + ext * ry), g.span(cx - ext * rx, cx + ext * rx)
    if sy.start >= sy.stop or sx.start >= sx.stop:
        return
    ax = (g.x1[sx] - cx) * (1.0 / rx)
    ay = (g.y1[sy] - cy) * (1.0 / ry)
    q = (ay * ay)[:, None] + (ax * ax)[None, :]
    if profile == "gauss":
        q *= -2.0
        v = np.exp(q, out=q)
    else:
        k = min(rx, ry) / g.mpp if profile == "hard" else 2.5
        q *= -k
        q += k
        v = clip01(q)
    v *= amp
    layer[sy, sx] += v


def segment(layer: np.ndarray, g: Grid, x0: float, y0: float, x1: float, y1: float,
            width: float, amp: float, add: bool = False) -> None:
    """A straight stroke of ``width`` mm (at least ~1 px), composited with max
    (so polylines do not double up at joints) or added (``add=True``)."""
    w = max(width / 2, 0.55 * g.mpp) + 0.5 * g.mpp
    sy = g.span(min(y0, y1) - w, max(y0, y1) + w)
    sx = g.span(min(x0, x1) - w, max(x0, x1) + w)
    if sy.start >= sy.stop or sx.start >= sx.stop:
        return
    dx, dy = x1 - x0, y1 - y0
    ll = dx * dx + dy * dy or 1e-6
    px, py = g.x1[sx] - x0, g.y1[sy] - y0
    t = (py * (dy / ll))[:, None] + (px * (dx / ll))[None, :]
    clip01(t)
    ex = px[None, :] - t * dx
    ey = py[:, None] - t * dy
    ex *= ex
    ey *= ey
    ex += ey
    ex *= -1.0 / (w * w)
    ex += 1.0
    v = clip01(ex)
    v *= amp
    if add:
        layer[sy, sx] += v
    else:
        np.maximum(layer[sy, sx], v, out=layer[sy, sx])


def polyline(layer: np.ndarray, g: Grid, points, width: float, amp: float) -> None:
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        segment(layer, g, x0, y0, x1, y1, width, amp)


def curve(p0, p1, p2, n: int = 5) -> list[tuple[float, float]]:
    """Points of a quadratic Bezier from ``p0`` to ``p2`` pulled towards ``p1``."""
    out = []
    for i in range(n + 1):
        t = i / n
        a, b, c = (1 - t) ** 2, 2 * (1 - t) * t, t * t
        out.append((a * p0[0] + b * p1[0] + c * p2[0], a * p0[1] + b * p1[1] + c * p2[1]))
    return out


def smooth3(a: np.ndarray) -> np.ndarray:
    """Separable [1, 2, 1] / 4 blur with edge replication."""
    p = np.pad(a, 1, mode="edge")
    r = (p[:-2] + 2 * p[1:-1] + p[2:]) * 0.25
    return (r[:, :-2] + 2 * r[:, 1:-1] + r[:, 2:]) * 0.25


# 5x7 bitmaps of the lead side markers burnt into external films.
_GLYPHS = {
    "L": ("10000", "10000", "10000", "10000", "10000", "10000", "11111"),
    "R": ("11110", "10001", "10001", "11110", "10100", "10010", "10001"),
}


@lru_cache(maxsize=8)
def glyph(letter: str, size: int) -> np.ndarray:
    """The marker letter scaled to ~1/9 of the image height (at least 7 px)."""
    bits = np.array([[c == "1" for c in row] for row in _GLYPHS[letter]], dtype=np.float32)
    k = max(1, round(size / 9 / 7))
    out = np.kron(bits, np.ones((k, k), dtype=np.float32))
    out.setflags(write=False)
    return out
