"""Frontal chest radiograph rendering from patient and study parameters.

A density map on the canonical canvas is acquired: resampled through the study's geometry, collimated
and marked (external site), blurred, made noisy and tone-mapped to 8-bit grey (bright = dense). Sizes
are millimetres: a 40 mm mass is ~6 px at 64 px.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from . import draw
from .anatomy import LEFT, RIGHT, Device, Finding, Patient, Study
from .draw import Grid, blob, clip01, curve, grid, polyline, segment

SOFT, AIR, HEART = 0.5, 0.36, 0.14


class _Chest:
    """Derived geometry of one study (heart box, domes, lung margins), in mm."""

    def __init__(self, p: Patient, st: Study):
        self.p, self.st = p, st
        self.W = p.width
        self.apex = p.apex + (8.0 if st.view == "AP" else 0.0)
        h = st.inspiration
        self.dome = {RIGHT: self.apex + (p.dome_r - p.apex) * h, LEFT: self.apex + (p.dome_l - p.apex) * h}
        self.med = {RIGHT: p.med_r, LEFT: p.med_l}
        mag = 1.12 if st.view == "AP" else 1.0
        self.hw = st.ctr * 2 * self.W * mag  # heart width
        self.hh = p.heart_aspect * self.hw
        self.hx = p.heart_shift * self.hw
        self.hbottom = 0.5 * (self.dome[RIGHT] + self.dome[LEFT]) + 6.0
        self.htop = self.hbottom - self.hh
        self.carina = p.carina + (6.0 if st.view == "AP" else 0.0)
        self.mx = 0.0

    def spine_x(self, ys: np.ndarray) -> np.ndarray:
        if not self.p.scoliosis:
            return np.zeros_like(ys)
        t = clip01((ys - self.apex) * (1.0 / (self.dome[RIGHT] - self.apex + 40.0)))
        return self.p.scoliosis * np.sin(np.pi * t)

    def lung(self, g: Grid, side: str, gap: float = 0.0) -> np.ndarray:
        """Soft mask of one lung; ``gap`` > 0 gives the lung collapsed away from the wall."""
        s = -1.0 if side == RIGHT else 1.0
        med, W = self.med[side], self.W - gap
        xc, hwmax = 0.5 * (W + med), 0.5 * (W - med) * 1.06
        top = self.apex + gap
        t = clip01((g.y1 - top) * (1.0 / (0.42 * (self.dome[side] - top))))[:, None]
        half = hwmax * (1.0 - (1.0 - t) ** 2.2)
        lat = xc + half
        medial = np.maximum(xc - half, med)
        u = s * g.xs
        dome = self.dome[side] - gap * 0.3 + self.p.cp_depth * ((u - xc) / hwmax) ** 2
        m = np.minimum(np.minimum(lat - u, u - medial), dome - g.ys)
        m *= 1.0 / max(3.0, g.mpp)
        return clip01(m)


def _base(g: Grid, c: _Chest) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    p, st = c.p, c.st
    ys, xs = g.ys, g.xs
    # Torso: shoulders narrow into the neck above the apices.
    bw = c.W + p.soft
    width = np.where(ys < c.apex - 30, 48.0 + (bw - 48.0) * clip01((ys - c.apex + 75) * (1 / 45)), bw)
    body = clip01((width - np.abs(xs)) * (1.0 / 6.0))
    dens = body * SOFT
    # Without scoliosis the midline is straight and midline shapes stay 1-D until broadcast.
    spine = c.spine_x(ys) if p.scoliosis else 0.0
    mw = st.mw + np.minimum(np.maximum((c.carina - ys) * 0.05, 0.0), 8.0)
    mediast = clip01((mw - np.abs(xs - spine)) * 0.25)
    mediast *= (ys < c.hbottom) & (ys > c.apex - 25)
    heart = np.zeros_like(dens)
    blob(heart, g, c.hx, c.hbottom - 0.32 * c.hh, 0.5 * c.hw, 0.68 * c.hh, 1.0, profile="hard")
    heart *= clip01((c.hbottom - g.ys) * 0.3)  # the base merges into the diaphragm
    lungs = {side: c.lung(g, side) for side in (RIGHT, LEFT)}
    dens += HEART * np.maximum(heart, mediast)
    # Trachea and main bronchi: an air column down to the carina.
    trachea = np.zeros_like(dens)
    tx = -3.0 + float(c.spine_x(np.array([c.carina], dtype=np.float32))[0])
    for s in (-1.0, 1.0):
        segment(trachea, g, tx, c.carina, tx + s * 28.0, c.carina + 24.0, 9.0, 0.8)
    trachea += clip01((7.5 + 0.5 * g.mpp - np.abs(xs - tx)) * (1.0 / g.mpp)) * (ys < c.carina)
    np.minimum(trachea, 1.0, out=trachea)
    dens -= 0.1 * trachea
    # Vertebral bodies: faint, periodic, seen through the mediastinum.
    dens += clip01((17.0 - np.abs(xs - spine)) * 0.3) * (0.0375 + 0.0125 * np.cos(ys * 0.25))
    return dens, {"heart": heart, "mediast": mediast, "body": body, **lungs}


def _bones(layer: np.ndarray, g: Grid, c: _Chest, lung_raw: np.ndarray, free: np.ndarray) -> None:
    p = c.p
    bend = (40.0 * p.rib_curve) * (g.xs / c.W) ** 2
    phase = (g.ys - c.apex - bend) * (1.0 / p.rib_spacing) + 0.15 * p.rib_phase
    ribs = np.cos(2 * np.pi * (phase - 0.5))
    ribs *= 3.0
    ribs -= 1.6
    clip01(ribs)
    layer += 0.085 * ribs * lung_raw * (0.35 + 0.65 * free)
    cy = c.apex + (-6.0 if c.st.view == "AP" else 6.0)
    for s in (-1.0, 1.0):
        segment(layer, g, s * 22.0, cy + 8, s * c.W * 0.98, cy - 22, 9.0, 0.2, add=True)
        if c.st.view == "AP":  # scapulae project over the lungs on AP films
            blob(layer, g, s * (c.W - 8), c.apex + 75, 28.0, 70.0, 0.06, profile="soft")
    if p.sex == "F":
        for s in (-1.0, 1.0):
            blob(layer, g, s * 0.6 * c.W, c.dome[RIGHT] - 5, 62.0, 48.0, 0.06, profile="gauss")


def _finding(F: np.ndarray, solid: np.ndarray, g: Grid, c: _Chest, f: Finding) -> None:
    s = -1.0 if f.side == RIGHT else 1.0
    if f.kind == "granuloma":
        blob(solid, g, f.x, f.y, f.size / 2, f.size / 2, 0.6)
    elif f.kind == "lesion":
        blob(solid, g, f.x, f.y, f.size / 2, f.size / 2 * 0.92, 0.34)
    elif f.kind == "opacity":
        blob(F, g, f.x, f.y, f.size / 2, f.size / 2.6, 0.2, profile="gauss", reach=0.8)
        blob(F, g, f.x + 0.25 * f.size, f.y + 0.2 * f.size, f.size / 3, f.size / 3, 0.12, profile="gauss")
    elif f.kind == "consolidation":
        blob(F, g, f.x, f.y, f.size / 2, f.size / 2.3, 0.24, profile="soft")
        blob(F, g, f.x - 0.2 * f.size, f.y + 0.15 * f.size, f.size / 3, f.size / 3.5, 0.12, profile="soft")
    elif f.kind == "edema":
        k = {"mild": 0, "moderate": 1, "severe": 2}[f.grade]
        for side in (RIGHT, LEFT):
            ss = -1.0 if side == RIGHT else 1.0
            blob(F, g, ss * (c.med[side] + 28), c.carina + 40, 50 + 15 * k, 62 + 15 * k,
                 0.13 + 0.08 * k, profile="gauss", reach=0.9)
        F += 0.03 * k
    elif f.kind == "atelectasis":
        y = c.dome[f.side] - 20.0
        x0 = s * (c.med[f.side] + 22)
        segment(F, g, x0, y, x0 + s * f.size, y - 7, 7.0, 0.32, add=True)
    elif f.kind == "pleural_thickening":
        if f.zone == "upper":
            blob(solid, g, s * 0.55 * c.W, c.apex + 4, 38.0, f.size + 3, 0.28, profile="soft")
        else:
            for dy in (-45.0, -15.0, 15.0):
                blob(solid, g, s * (c.W - f.size / 2), c.dome[f.side] + dy - 40, f.size, 20.0, 0.3)
    elif f.kind == "fracture":
        p = c.p
        u = 0.86 * c.W
        y = c.apex + 40.0 * p.rib_curve * 0.74 + (f.rib - 0.5 - 0.15 * p.rib_phase) * p.rib_spacing
        if f.acute:
            blob(solid, g, s * u, y, 7.0, 6.0, 0.22)
            segment(solid, g, s * (u - 2), y - 9, s * (u + 2), y + 9, 2.5, -0.15, add=True)
        else:
            blob(solid, g, s * u, y, 10.0, 8.0, 0.4)


def _effusion(g: Grid, c: _Chest, f: Finding) -> np.ndarray:
    s = -1.0 if f.side == RIGHT else 1.0
    med = c.med[f.side]
    base = c.dome[f.side] + 0.8 * c.p.cp_depth
    lateral = clip01((s * g.xs - med) * (1.0 / (c.W - med)))
    level = base - f.size - 0.35 * f.size * lateral
    return clip01((g.ys - level) * 0.25) * (s * g.xs > 0)


def _devices(V: np.ndarray, g: Grid, c: _Chest, devices: list[Device]) -> None:
    p, car, top = c.p, c.carina, -210.0
    tip_y = {"upper SVC": car - 18, "mid SVC": car + 4, "cavoatrial junction": car + 32, "right atrium": car + 55}
    for d in devices:
        s = -1.0 if d.side == RIGHT else 1.0
        if d.kind == "ett":
            segment(V, g, -3, top, -3, car - d.tip_mm, 5.0, 0.75)
        elif d.kind == "enteric":
            end = (0.42 * c.W, c.dome[LEFT] + 38) if d.tip == "stomach" else (10.0, c.dome[LEFT] - 35)
            pts = [(4.0, top), (8.0, car + 40)] + curve((10.0, c.dome[LEFT] - 25), (14.0, c.dome[LEFT] + 30), end, 3)
            polyline(V, g, pts, 3.5, 0.8)
        elif d.kind == "cvc":
            ty = tip_y[d.tip]
            if d.side == RIGHT:
                pts = [(-48.0, top), (-30.0, c.apex)] + curve((-24.0, car - 40), (-20.0, car), (-16.0, ty), 3)
            else:
                pts = [(c.W * 0.8, c.apex + 8), (40.0, c.apex + 2)] + curve((10.0, car - 55), (-22.0, car - 40), (-16.0, ty), 3)
            polyline(V, g, pts, 3.0, 0.8)
        elif d.kind == "picc":
            ty = tip_y[d.tip]
            pts = [(s * (c.W + p.soft + 10), c.apex + 40), (s * c.W * 0.85, c.apex + 2), (s * 40.0, c.apex + 8)]
            pts += curve((s * 15.0, car - 50), (-22.0, car - 30), (-16.0, ty), 3)
            polyline(V, g, pts, 2.5, 0.75)
        elif d.kind == "pacemaker":
            gx, gy = s * 0.62 * c.W, c.apex + 28
            blob(V, g, gx, gy, 22.0, 16.0, 1.0)
            ra = (-22.0, c.htop + 30)
            rv = (c.hx + 0.18 * c.hw, c.hbottom - 22)
            for end in ([rv, ra] if d.leads == 2 else [rv]):
                pts = curve((gx, gy), (s * 20.0, c.apex + 10), (-14.0, car + 10), 3)[:-1] + curve(
                    (-14.0, car + 10), (-20.0, c.htop + 10), end, 3)
                polyline(V, g, pts, 2.5, 0.85)
            if d.tip == "icd":
                segment(V, g, rv[0] - 30, rv[1] - 28, rv[0], rv[1], 7.0, 0.95)
        elif d.kind == "sternotomy":
            y0, y1 = car - 35, c.htop + 0.55 * c.hh
            for k in range(6):
                blob(V, g, 4.0, y0 + (y1 - y0) * k / 5, 6.0, 4.5, 0.9)
        elif d.kind == "chest_tube":
            u = c.W
            pts = curve((s * (u + p.soft * 0.6), c.dome[d.side] - 10), (s * u * 0.9, c.dome[d.side] - 80),
                        (s * u * 0.55, c.apex + 25), 4)
            polyline(V, g, pts, 6.0, 0.7)


def density(p: Patient, st: Study, size: int) -> np.ndarray:
    """The study's density map on the canonical canvas (float32, size x size)."""
    g = grid(size)
    c = _Chest(p, st)
    dens, parts = _base(g, c)
    heart, mediast = parts["heart"], parts["mediast"]
    lung_raw = parts[RIGHT] + parts[LEFT]
    F = np.zeros_like(dens)  # airspace / interstitial: only shows within lung
    solid = np.zeros_like(dens)  # nodules, pleura, bone: shows wherever drawn
    V = np.zeros_like(dens)  # metal and tubes
    air = {RIGHT: parts[RIGHT], LEFT: parts[LEFT]}
    for f in st.findings:
        if f.kind == "effusion":
            fl = _effusion(g, c, f)
            air[f.side] = air[f.side] * (1.0 - fl)
            dens += 0.06 * fl * parts[f.side]
        elif f.kind == "pneumothorax":
            collapsed = c.lung(g, f.side, gap=f.size)
            rim = clip01(1.0 - np.abs(collapsed - 0.5) * 2.2) * parts[f.side]
            dens -= 0.09 * (parts[f.side] - collapsed).clip(0.0) - 0.22 * rim
            air[f.side] = collapsed
        else:
            _finding(F, solid, g, c, f)
    free = (1.0 - heart) * (1.0 - mediast)
    aerated = (air[RIGHT] + air[LEFT]) * free
    # Hilar vessels: lungs are denser towards the hila than at the periphery.
    hil = np.exp(-((np.abs(g.xs) - 45.0) ** 2) * (1.0 / 2500.0)) * (0.07 * np.exp(-((g.ys - c.carina - 30.0) ** 2) * (1.0 / 6000.0)))
    dens -= AIR * aerated
    dens += (F * 0.2) * lung_raw * (1.0 - free)
    F += hil
    dens += F * aerated
    _bones(dens, g, c, lung_raw, free)
    dens += solid
    if p.aorta:
        r = 19.0 if p.aorta == "tortuous" else 15.0
        blob(dens, g, st.mw * 0.6 + 12.0, c.carina - 42, r, r, 0.1)
        if p.aorta == "calcified":
            segment(dens, g, st.mw * 0.6 + 2, c.carina - 57, st.mw * 0.6 + 22, c.carina - 52, 2.5, 0.3, add=True)
    blob(dens, g, 0.42 * c.W, c.dome[LEFT] + 30, 28.0, 14.0, -0.16, profile="soft")  # gastric air
    _devices(V, g, c, st.devices)
    dens += V
    return dens


def acquire(dens: np.ndarray, st: Study, rng: np.random.Generator) -> np.ndarray:
    """Resample through the acquisition geometry, add noise, tone-map to uint8."""
    a = st.acq
    size = dens.shape[0]
    mpp = draw.FOV_MM / size
    cos, sin = np.cos(a.rotation) * a.zoom, np.sin(a.rotation) * a.zoom
    c = size / 2.0
    ox, oy = a.shift_x / mpp, a.shift_y / mpp
    coeffs = (cos, -sin, c - cos * c + sin * c + ox, sin, cos, c - sin * c - cos * c + oy)
    img = np.asarray(Image.fromarray(dens).transform(
        (size, size), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR), dtype=np.float32)
    if a.marker or any(a.collimation):
        img = img.copy()
        left, right, top, bottom = (int(v * size) for v in a.collimation)
        for sl in (np.s_[:, :left], np.s_[:, size - right:] if right else np.s_[:, :0], np.s_[:top], np.s_[size - bottom:] if bottom else np.s_[:0]):
            img[sl] = 0.9
        if a.marker:
            gl = draw.glyph(a.marker, size)
            y0, x0 = max(2, top + 2), size - right - gl.shape[1] - 3
            view = img[y0:y0 + gl.shape[0], x0:x0 + gl.shape[1]]
            np.maximum(view, gl[:view.shape[0], :view.shape[1]] * 1.15, out=view)
    if a.blur:
        img = draw.smooth3(img)
    img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(a.noise)
    img *= np.float32(a.gain)
    img += np.float32(a.offset)
    clip01(img)
    img = img ** np.float32(a.gamma)
    return (img * 255.0 + 0.5).astype(np.uint8)


def render(p: Patient, st: Study, size: int, rng: np.random.Generator) -> np.ndarray:
    """One frontal radiograph (uint8, size x size) of ``st``; ``rng`` draws only the noise."""
    return acquire(density(p, st, size).astype(np.float32, copy=False), st, rng)
