"""Procedural face-like images: per-identity appearance, per-image nuisance.

An identity is a dictionary of appearance parameters (head shape, skin tone,
hair style and colour, eye spacing/size/colour, brows, nose, mouth, glasses,
beard, a mole) drawn from its own random generator. Each image of it is drawn
on a 2x canvas with anti-aliased OpenCV primitives and then disturbed: expression
(blink, smile), yaw, rotation/scale/shift, background clutter, clothing,
directional lighting and colour cast, blur, sensor noise, an occluder, mirroring.
"""
from typing import Dict

import cv2
import numpy as np

_SKIN = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 130], [198, 134, 96], [161, 102, 72],
                  [120, 74, 50], [88, 56, 40], [250, 210, 170]], dtype=np.float32)
_HAIR = np.array([[20, 18, 18], [70, 45, 30], [120, 80, 45], [200, 160, 90], [165, 70, 35],
                  [150, 150, 150], [235, 225, 200], [60, 60, 75]], dtype=np.float32)
_IRIS = np.array([[80, 50, 25], [40, 90, 160], [60, 120, 70], [110, 110, 120], [30, 25, 20]], dtype=np.float32)
_HAIR_STYLES = ("short", "long", "bald", "fringe", "side_part", "bun")
_AA = cv2.LINE_AA


def identity_params(rng: np.random.Generator) -> Dict:
    """Draw the appearance of one identity."""
    skin = _SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.9, 1.08, 3)
    hair = _HAIR[rng.integers(len(_HAIR))] * rng.uniform(0.8, 1.2)
    return {
        "head_w": rng.uniform(31, 42), "head_h": rng.uniform(40, 50), "jaw": rng.uniform(0.75, 1.0),
        "skin": np.clip(skin, 0, 255), "hair": np.clip(hair, 0, 255),
        "hair_style": _HAIR_STYLES[rng.integers(len(_HAIR_STYLES))], "hairline": rng.uniform(0.25, 0.5),
        "eye_dx": rng.uniform(11, 18), "eye_y": rng.uniform(-8, 2), "eye_w": rng.uniform(4.5, 8),
        "eye_h": rng.uniform(2.2, 4.2), "iris": _IRIS[rng.integers(len(_IRIS))] * rng.uniform(0.8, 1.2),
        "brow_t": rng.uniform(1.5, 4.5), "brow_tilt": rng.uniform(-0.35, 0.35), "brow_gap": rng.uniform(5, 10),
        "nose_len": rng.uniform(10, 20), "nose_w": rng.uniform(4, 9),
        "mouth_y": rng.uniform(24, 33), "mouth_w": rng.uniform(9, 17), "lip_t": rng.uniform(1.5, 4.5),
        "lip": np.clip(skin * np.array([0.85, 0.55, 0.55]) * rng.uniform(0.8, 1.1), 0, 255),
        "smile": rng.uniform(-2.5, 4),
        "glasses": rng.random() < 0.25, "glasses_round": rng.random() < 0.5,
        "frame": np.array([rng.integers(0, 120)] * 3 if rng.random() < 0.6 else rng.integers(0, 255, 3), np.float32),
        "beard": rng.random() < 0.2, "moustache": rng.random() < 0.2,
        "mole": (rng.uniform(-25, 25), rng.uniform(-20, 30)) if rng.random() < 0.35 else None,
        "ear": rng.uniform(5, 9),
    }


def _ellipse(canvas, center, axes, angle, color, thickness=-1, start=0, end=360):
    c = (int(round(center[0] * 16)), int(round(center[1] * 16)))
    a = (max(1, int(round(axes[0] * 16))), max(1, int(round(axes[1] * 16))))
    cv2.ellipse(canvas, c, a, angle, start, end, tuple(float(v) for v in color), thickness, _AA, 4)


def _poly(canvas, points, color, closed=True, thickness=-1):
    pts = np.round(np.asarray(points, dtype=np.float64) * 16).astype(np.int32).reshape(-1, 1, 2)
    color = tuple(float(v) for v in color)
    if thickness < 0:
        cv2.fillPoly(canvas, [pts], color, _AA, 4)
    else:
        cv2.polylines(canvas, [pts], closed, color, max(1, int(round(thickness))), _AA, 4)


def _background(rng, s):
    top, bottom = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    ramp = np.linspace(0, 1, s, dtype=np.float32)[:, None, None]
    canvas = np.empty((s, s, 3), dtype=np.float32)
    canvas[:] = (top * (1 - ramp) + bottom * ramp).astype(np.float32)
    for _ in range(rng.integers(0, 4)):  # clutter behind the head
        c = rng.uniform(0, s, 2)
        _ellipse(canvas, c, rng.uniform(8, 50, 2), rng.uniform(0, 180), rng.uniform(0, 255, 3))
    return canvas


def _hair_back(canvas, p, cx, cy, yaw):
    hw, hh = p["head_w"] * 2, p["head_h"] * 2
    if p["hair_style"] == "long":
        _poly(canvas, [(cx - hw - 8, cy - 10), (cx + hw + 8, cy - 10), (cx + hw + 14, cy + hh + 30),
                       (cx - hw - 14, cy + hh + 30)], p["hair"])
        _ellipse(canvas, (cx, cy - 10), (hw + 10, hh + 8), 0, p["hair"])
    elif p["hair_style"] == "bun":
        _ellipse(canvas, (cx - yaw * 20, cy - hh - 18), (26, 22), 0, p["hair"])


def _head(canvas, p, cx, cy, yaw, shirt):
    hw, hh = p["head_w"] * 2 * (1 - 0.12 * abs(yaw)), p["head_h"] * 2
    skin_dark = p["skin"] * 0.82
    _poly(canvas, [(cx - 130, 224 + 40), (cx - 70, cy + hh + 10), (cx + 70, cy + hh + 10), (cx + 130, 264)], shirt)
    _poly(canvas, [(cx - hw * 0.45, cy + hh * 0.5), (cx + hw * 0.45, cy + hh * 0.5),
                   (cx + hw * 0.5, cy + hh + 22), (cx - hw * 0.5, cy + hh + 22)], skin_dark)
    for side in (-1, 1):  # the far ear disappears as the head turns
        if side * yaw < 0.45:
            _ellipse(canvas, (cx + side * (hw - 2) + yaw * 10, cy), (p["ear"] * 2, p["ear"] * 3), 0, skin_dark)
    _ellipse(canvas, (cx, cy - hh * 0.1), (hw, hh * 0.9), 0, p["skin"])
    jaw = hw * p["jaw"]
    _ellipse(canvas, (cx, cy + hh * 0.15), (jaw, hh * 0.8), 0, p["skin"], start=0, end=180)
    return hw, hh


def _hair_front(canvas, p, cx, cy, hw, hh, yaw):
    style = p["hair_style"]
    if style == "bald":
        return
    top = cy - hh * 0.1 - hh * 0.9
    line = top + hh * 2 * p["hairline"] * (0.55 if style == "fringe" else 0.45)
    xs = np.linspace(-hw - 4, hw + 4, 25)
    ys = np.full_like(xs, line)
    if style == "side_part":
        ys = ys - (xs + hw) / (2 * hw) * 14
    cap = [(cx + x, y) for x, y in zip(xs, ys)]
    ang = np.linspace(0, np.pi, 25)
    cap += [(cx + (hw + 5) * np.cos(a), cy - hh * 0.1 - (hh * 0.9 + 6) * np.sin(a)) for a in ang]
    _poly(canvas, cap, p["hair"])
    if style in ("long", "short"):
        for side in (-1, 1):  # sideburns
            _ellipse(canvas, (cx + side * (hw - 4), (line + cy) / 2), (5, max(2.0, (cy - line) / 2)), 0, p["hair"])


def _eyes_brows(canvas, p, cx, cy, yaw, blink, brow_raise):
    ey = cy + p["eye_y"] * 2
    for side in (-1, 1):
        squeeze = 1 - 0.35 * max(0.0, side * yaw)
        ex = cx + side * p["eye_dx"] * 2 * (1 - 0.2 * abs(yaw)) + yaw * 14
        ew, eh = p["eye_w"] * 2 * squeeze, max(0.6, p["eye_h"] * 2 * blink)
        _ellipse(canvas, (ex, ey), (ew, eh), 0, (245, 245, 240))
        if blink > 0.3:
            _ellipse(canvas, (ex + yaw * 4, ey), (min(ew, eh) * 0.95, eh * 0.95), 0, p["iris"])
            _ellipse(canvas, (ex + yaw * 4, ey), (eh * 0.4, eh * 0.4), 0, (10, 10, 10))
        _ellipse(canvas, (ex, ey), (ew, eh), 0, p["skin"] * 0.5, 2, 180, 360)
        by = ey - p["brow_gap"] * 2 - brow_raise
        tilt = p["brow_tilt"] * side * 12
        _poly(canvas, [(ex - ew * 1.1, by + tilt), (ex, by - 3), (ex + ew * 1.1, by - tilt)],
              p["hair"] * 0.7, closed=False, thickness=p["brow_t"] * 2)
        if p["glasses"]:
            r = p["eye_w"] * 2 * 1.6 * squeeze
            if p["glasses_round"]:
                _ellipse(canvas, (ex, ey), (r, r * 0.85), 0, p["frame"], 3)
            else:
                _poly(canvas, [(ex - r, ey - r * 0.7), (ex + r, ey - r * 0.7), (ex + r, ey + r * 0.7),
                               (ex - r, ey + r * 0.7)], p["frame"], thickness=3)
    if p["glasses"]:
        r = p["eye_w"] * 2 * 1.6
        _poly(canvas, [(cx - p["eye_dx"] * 2 + r + yaw * 14, ey), (cx + p["eye_dx"] * 2 - r + yaw * 14, ey)],
              p["frame"], closed=False, thickness=3)
    return ey


def _nose_mouth(canvas, p, cx, cy, ey, yaw, smile, mouth_open):
    nx = cx + yaw * 26
    tip = ey + p["nose_len"] * 2
    shade = p["skin"] * 0.7
    _poly(canvas, [(nx - yaw * 6, ey + 6), (nx + yaw * 8, tip)], shade, closed=False, thickness=3)
    for side in (-1, 1):
        _ellipse(canvas, (nx + side * p["nose_w"], tip), (p["nose_w"] * 0.6, 3), 0, shade * 0.8)
    my = cy + p["mouth_y"] * 2
    mx_ = cx + yaw * 20
    mw = p["mouth_w"] * 2 * (1 - 0.2 * abs(yaw))
    curve = (p["smile"] + smile) * 2
    xs = np.linspace(-1, 1, 15)
    upper = [(mx_ + x * mw, my - curve * (1 - x * x) + curve - mouth_open) for x in xs]
    lower = [(mx_ + x * mw, my - curve * (1 - x * x) + curve + p["lip_t"] * 2 * (1 - x * x) + mouth_open)
             for x in xs[::-1]]
    _poly(canvas, upper + lower, p["lip"])
    if mouth_open > 2:
        _poly(canvas, [(mx_ + x * mw * 0.8, my - curve * (1 - x * x) + curve) for x in xs], (40, 20, 20),
              closed=False, thickness=max(1, mouth_open))
    if p["moustache"]:
        _ellipse(canvas, (mx_, my - 8), (mw * 0.9, 5), 0, p["hair"] * 0.9, -1, 180, 360)
    return my


def _beard_mole(canvas, p, cx, cy, hw, hh, my, yaw):
    if p["beard"]:
        pts = [(cx + x * hw * p["jaw"] * 0.95, my + 4) for x in np.linspace(-1, 1, 9)]
        pts += [(cx + hw * p["jaw"] * np.cos(a) * 0.95, cy + hh * 0.15 + hh * 0.8 * np.sin(a) + 3)
                for a in np.linspace(0.15, np.pi - 0.15, 15)]
        _poly(canvas, pts, p["hair"] * 0.9)
    if p["mole"] is not None:
        _ellipse(canvas, (cx + p["mole"][0] * 2 + yaw * 15, cy + p["mole"][1] * 2), (2.5, 2.5), 0, p["skin"] * 0.35)


def render_face(p: Dict, rng: np.random.Generator, size: int = 112, pose: float = 1.0,
                drift: float = 0.0) -> np.ndarray:
    """Render one image of identity ``p``.

    Parameters
    ----------
    p : dict
        From :func:`identity_params`.
    rng : np.random.Generator
        Drives every per-image nuisance.
    size : int
        Output side in pixels.
    pose : float
        Multiplier of the yaw, rotation and shift ranges (a frontal/profile set uses more).
    drift : float
        Appearance drift over time in [0, 1]: greying hair, darker skin, wrinkles (an age-gap set).

    Returns
    -------
    np.ndarray
        ``(size, size, 3)`` uint8 RGB.
    """
    s = 224
    if drift > 0:
        p = dict(p)
        grey = rng.uniform(0, drift)
        p["hair"] = p["hair"] * (1 - grey) + np.float32(190) * grey
        p["skin"] = p["skin"] * (1 - 0.12 * rng.uniform(0, drift))
    canvas = _background(rng, s)
    cx, cy = s / 2, s / 2 + 6
    yaw = float(np.clip(rng.normal(0, 0.18 * pose), -0.8, 0.8))
    shirt = rng.uniform(0, 255, 3)
    _hair_back(canvas, p, cx, cy, yaw)
    hw, hh = _head(canvas, p, cx, cy, yaw, shirt)
    _hair_front(canvas, p, cx, cy, hw, hh, yaw)
    blink = 1.0 if rng.random() > 0.1 else rng.uniform(0.1, 0.5)
    ey = _eyes_brows(canvas, p, cx, cy, yaw, blink, rng.uniform(-2, 4))
    mouth_open = rng.uniform(3, 8) if rng.random() < 0.2 else 0.0
    my = _nose_mouth(canvas, p, cx, cy, ey, yaw, rng.uniform(-1.5, 2), mouth_open)
    _beard_mole(canvas, p, cx, cy, hw, hh, my, yaw)
    if drift > 0 and rng.random() < drift:
        for side in (-1, 1):  # crow's feet
            _poly(canvas, [(cx + side * (p["eye_dx"] * 2 + p["eye_w"] * 2 + 4), ey + d) for d in (-5, 0, 5)],
                  p["skin"] * 0.75, closed=False, thickness=1)
    return _finish(canvas, rng, size, pose)


def _finish(canvas: np.ndarray, rng: np.random.Generator, size: int, pose: float) -> np.ndarray:
    s = canvas.shape[0]
    angle = rng.normal(0, 6 * pose)
    scale = rng.uniform(0.92, 1.08) * size / s
    shift = rng.normal(0, 2.5 * pose, 2)
    m = cv2.getRotationMatrix2D((s / 2, s / 2), angle, scale)
    m[:, 2] += (size - s) / 2 + shift
    img = cv2.warpAffine(canvas, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    direction = rng.uniform(0, 2 * np.pi)
    light = rng.uniform(0.8, 1.2) * (1 + rng.uniform(0, 0.5) * (np.cos(direction) * xx + np.sin(direction) * yy))
    img = img * light[..., None] * rng.uniform(0.94, 1.06, 3).astype(np.float32)
    if rng.random() < 0.5:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.4))
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0, 7))
    if rng.random() < 0.25:  # occluder: a hand, a scarf, a microphone...
        w, h = rng.uniform(0.15, 0.4, 2) * size
        x0, y0 = rng.uniform(0, size - w), rng.uniform(size * 0.3, size - h)
        pts = np.array([[x0, y0], [x0 + w, y0], [x0 + w, y0 + h], [x0, y0 + h]]) + rng.normal(0, 3, (4, 2))
        cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], tuple(rng.uniform(0, 255, 3).tolist()), _AA, 4)
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)
