"""Rendering of one synthetic road image with TuSimple-format lane labels.

A pinhole camera at height ``cam_height`` looks along a flat road. A painted lane line at
lateral offset X (metres, relative to the camera) follows X(Z) = X + yaw * Z + curve * Z^2 at
distance Z, and projects to image row y = horizon + f * cam_height / Z and column
x = cx + f * X(Z) / Z. Camera offset, heading, pitch (horizon row), focal length, lane width,
number of lines, curvature and visibility distance vary per image, so lane positions vary
strongly; labels are the projected centre lines at the TuSimple rows (160..710 step 10 on a
720-row image, scaled to the image height), x rounded to int, -2 where a lane has no point.

The image: sky and a distant tree line, roadside ground, asphalt, solid or dashed white/yellow
lines with worn paint, dark tyre marks (distractors), vehicle-like boxes that occlude lines,
shadows, global lighting and colour changes, and grain. Everything is drawn with OpenCV
polygon fills on uint8 images and one low-resolution shading map, so a 1280x720 image takes a
few milliseconds; lines that would get fewer than ``MIN_LABEL_POINTS`` labelled rows are not
painted, so everything painted is labelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

TUSIMPLE_ROWS = tuple(range(160, 720, 10))  # h_samples of a 720-row TuSimple image
MIN_LABEL_POINTS = 6
MAX_LINES = 5
_SHIFT = 4  # fixed-point bits for sub-pixel polygon vertices
_ONE = 1 << _SHIFT


def h_samples_for(height: int) -> list[int]:
    """TuSimple's label rows scaled to an image of ``height`` rows."""
    return [int(round(y * height / 720)) for y in TUSIMPLE_ROWS]


@dataclass
class SceneTextures:
    """Per-process noise tiles, derived from (seed, size) only; images take random crops."""

    width: int
    height: int
    grain: np.ndarray = field(repr=False)  # (2H, 2W, 3) uint8 noise centred on 128, std 16

    @classmethod
    def create(cls, width: int, height: int, seed: int) -> SceneTextures:
        rng = np.random.default_rng([seed, 0x5EED, width, height])
        noise = rng.normal(128.0, 16.0, size=(2 * height, 2 * width, 3))
        return cls(width, height, np.clip(noise, 0, 255).astype(np.uint8))

    def grain_crop(self, rng: np.random.Generator) -> np.ndarray:
        y0 = int(rng.integers(self.height))
        x0 = int(rng.integers(self.width))
        return self.grain[y0 : y0 + self.height, x0 : x0 + self.width]


@dataclass
class Camera:
    width: int
    height: int
    focal: float
    cam_height: float
    horizon: float
    cx: float
    yaw: float
    curve: float

    def row(self, z: np.ndarray) -> np.ndarray:
        return self.horizon + self.focal * self.cam_height / z

    def depth(self, y: np.ndarray) -> np.ndarray:
        return self.focal * self.cam_height / (y - self.horizon)

    def column(self, lateral: float | np.ndarray, z: np.ndarray) -> np.ndarray:
        return self.cx + self.focal * (lateral + self.yaw * z + self.curve * z * z) / z


@dataclass
class Scene:
    """The rendered BGR image, its TuSimple label and a description of what was drawn."""

    image: np.ndarray
    h_samples: list[int]
    lanes: list[list[int]]
    info: dict


# Palettes (BGR) varied per image.
SKY_TOPS = ((200, 150, 105), (175, 170, 165), (150, 150, 175))
GROUNDS = ((60, 120, 80), (80, 140, 150), (70, 95, 115), (130, 135, 140))


def _colour(rng: np.random.Generator, low, high) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(low, high))


def _tuple(values: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(v) for v in np.clip(values, 0, 255))


def _poly(points_xy: np.ndarray) -> np.ndarray:
    return np.round(points_xy * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _sample_camera(rng: np.random.Generator, width: int, height: int) -> Camera:
    if rng.random() < 0.35:
        curve = rng.uniform(-2e-4, 2e-4)
    else:
        curve = rng.choice((-1.0, 1.0)) * rng.uniform(4e-4, 2.4e-3)
    return Camera(
        width=width,
        height=height,
        focal=width * rng.uniform(0.70, 0.86),
        cam_height=rng.uniform(1.3, 1.8),
        horizon=height * rng.uniform(0.34, 0.42),
        cx=width * (0.5 + rng.uniform(-0.03, 0.03)),
        yaw=rng.uniform(-0.045, 0.045),
        curve=float(curve),
    )


def _label(camera: Camera, lateral: float, z_far: float, rows: np.ndarray) -> list[int]:
    top = camera.row(np.array(z_far))
    xs = np.full(len(rows), -2, dtype=np.int64)
    valid = rows > top
    z = camera.depth(rows[valid].astype(np.float64))
    x = np.floor(camera.column(lateral, z) + 0.5)
    inside = (x >= 0) & (x < camera.width)
    xs[np.flatnonzero(valid)[inside]] = x[inside]
    return [int(v) for v in xs]


def _strip(
    camera: Camera, left: float, right: float, z_near: float, z_far: float, steps: int
) -> np.ndarray:
    """Polygon (pixels) of the road strip between two lateral offsets over [z_near, z_far],
    sampled uniformly in image rows."""
    rows = np.linspace(camera.row(np.array(z_far)), camera.row(np.array(z_near)), steps)
    z = camera.depth(rows)
    left_x, right_x = camera.column(left, z), camera.column(right, z)
    return np.concatenate((np.stack((left_x, rows), 1), np.stack((right_x, rows), 1)[::-1]), axis=0)


def render_scene(rng: np.random.Generator, width: int, height: int, textures: SceneTextures):
    """Draw one road image (BGR uint8) and its TuSimple label; see the module docstring."""
    rows = np.array(h_samples_for(height), dtype=np.float64)
    for _ in range(100):
        camera = _sample_camera(rng, width, height)
        lane_width = rng.uniform(3.0, 4.0)
        n_lines = int(rng.choice((2, 3, 4, 5), p=(0.15, 0.3, 0.3, 0.25)))
        ego = int(rng.integers(n_lines - 1))
        offset = (ego + rng.uniform(0.2, 0.8)) * lane_width
        laterals = [k * lane_width + rng.uniform(-0.08, 0.08) - offset for k in range(n_lines)]
        z_far = rng.uniform(45.0, 90.0)
        labels = [_label(camera, lateral, z_far, rows) for lateral in laterals]
        drawn = [k for k, xs in enumerate(labels) if sum(x >= 0 for x in xs) >= MIN_LABEL_POINTS]
        if len(drawn) >= 2:
            break
    else:  # pragma: no cover - the loop succeeds within a few tries
        raise RuntimeError("could not sample a scene with two visible lanes")

    image = np.empty((height, width, 3), dtype=np.uint8)
    horizon = int(round(camera.horizon))
    # Sky (BGR): clear blue, overcast grey or hazy/dusk, brighter towards the horizon.
    kind = int(rng.choice(3, p=(0.45, 0.4, 0.15)))
    top = np.array(SKY_TOPS[kind]) + rng.uniform(-15, 15, 3)
    bottom = np.clip(top + rng.uniform(25, 60), 0, 255)
    ramp = np.linspace(0.0, 1.0, max(horizon, 1), dtype=np.float32)[:, None, None]
    column = (top + (bottom - top) * ramp).astype(np.uint8)  # (horizon, 1, 3)
    image[:horizon] = cv2.resize(column, (width, max(horizon, 1)), interpolation=cv2.INTER_NEAREST)
    # Roadside ground: grass, dry grass, dirt or concrete.
    ground = np.array(GROUNDS[int(rng.integers(len(GROUNDS)))]) + rng.uniform(-12, 12, 3)
    cv2.rectangle(image, (0, horizon), (width, height), _tuple(ground), -1)

    # Distant tree line / hills around the horizon.
    n_ridge = 24
    ridge_x = np.linspace(-10, width + 10, n_ridge)
    ridge_y = camera.horizon - rng.uniform(0.0, 0.07, n_ridge) * height * rng.uniform(0.3, 1.0)
    ridge = np.concatenate(
        (
            np.stack((ridge_x, ridge_y), 1),
            [[width + 10, camera.horizon + 3], [-10, camera.horizon + 3]],
        )
    )
    ridge_colour = np.array((45, 70, 50)) * rng.uniform(0.6, 1.4) + rng.uniform(-10, 10, 3)
    cv2.fillPoly(image, [_poly(ridge)], _tuple(ridge_colour), cv2.LINE_AA, _SHIFT)

    # Asphalt between the outer lines plus shoulders.
    z_near = camera.depth(np.array(height + 30.0))
    z_road = min(z_far * 1.8, 220.0)
    asphalt = rng.uniform(65, 135) + rng.uniform(-5, 5, 3)
    road_left = laterals[0] - rng.uniform(0.4, 2.5)
    road_right = laterals[-1] + rng.uniform(0.4, 2.5)
    cv2.fillPoly(
        image,
        [_poly(_strip(camera, road_left, road_right, z_near, z_road, 60))],
        tuple(float(v) for v in asphalt),
        cv2.LINE_AA,
        _SHIFT,
    )

    # Tyre marks: darker bands inside lanes (line-like distractors).
    for _ in range(int(rng.integers(0, 3))):
        lateral = rng.uniform(laterals[0], laterals[-1])
        band = rng.uniform(0.3, 0.7)
        shade = tuple(float(v) for v in asphalt * rng.uniform(0.8, 0.92))
        strip = _strip(camera, lateral - band / 2, lateral + band / 2, z_near, z_far * 0.8, 30)
        cv2.fillPoly(image, [_poly(strip)], shade, cv2.LINE_AA, _SHIFT)

    # Lane lines.
    styles = []
    for k in drawn:
        lateral = laterals[k]
        paint_w = rng.uniform(0.10, 0.20)
        yellow = rng.random() < (0.35 if k == drawn[0] else 0.1)
        paint = np.array(
            _colour(rng, (40, 170, 200), (90, 215, 245))
            if yellow
            else _colour(rng, (205, 205, 205), (250, 250, 250))
        )
        wear = rng.uniform(0.55, 1.0)
        colour = tuple(float(v) for v in asphalt * (1 - wear) + paint * wear)
        dashed = rng.random() < (0.3 if k in (drawn[0], drawn[-1]) else 0.65)
        styles.append("dashed" if dashed else "solid")
        left, right = lateral - paint_w / 2, lateral + paint_w / 2
        if not dashed:
            polys = [_poly(_strip(camera, left, right, z_near, z_far, 48))]
        else:
            dash = rng.uniform(2.5, 3.5)
            period = dash + rng.uniform(5.0, 9.0)
            starts = np.arange(-rng.uniform(0, period), z_far, period)
            polys = []
            for z0 in starts:
                a, b = max(z0, z_near), min(z0 + dash, z_far)
                if b > a:
                    polys.append(_poly(_strip(camera, left, right, a, b, 6)))
        if polys:
            cv2.fillPoly(image, polys, colour, cv2.LINE_AA, _SHIFT)

    # Vehicles (far to near), occluding lines behind them.
    vehicles = []
    for _ in range(int(rng.choice((0, 1, 2, 3), p=(0.3, 0.35, 0.25, 0.1)))):
        slot = int(rng.integers(-1, n_lines))
        in_ego = slot == ego
        z = rng.uniform(18.0 if in_ego else 8.0, 80.0)
        centre = (slot + 0.5) * lane_width - offset + rng.uniform(-0.3, 0.3)
        vehicles.append((z, centre))
    for z, centre in sorted(vehicles, reverse=True):
        truck = rng.random() < 0.15
        w_m, h_m = (
            (2.5, rng.uniform(2.8, 3.6))
            if truck
            else (rng.uniform(1.7, 2.0), rng.uniform(1.3, 1.8))
        )
        zz = np.array(z)
        base = float(camera.row(zz))
        xc = float(camera.column(centre, zz))
        w = camera.focal * w_m / z
        h = camera.focal * h_m / z
        body = _colour(rng, (20, 20, 20), (230, 230, 230))
        x0, x1, y0 = xc - w / 2, xc + w / 2, base - h
        cv2.ellipse(
            image,
            (int(xc), int(base)),
            (int(w * 0.6) + 1, max(int(h * 0.08), 1)),
            0,
            0,
            360,
            (20, 20, 20),
            -1,
            cv2.LINE_AA,
        )
        cv2.rectangle(image, (int(x0), int(y0)), (int(x1), int(base - h * 0.05)), body, -1)
        if not truck:
            glass = tuple(v * 0.35 for v in body)
            cv2.rectangle(
                image,
                (int(x0 + w * 0.1), int(y0 + h * 0.08)),
                (int(x1 - w * 0.1), int(y0 + h * 0.4)),
                glass,
                -1,
            )
        light_y = int(base - h * 0.45)
        size = max(int(w * 0.08), 1)
        for lx in (x0 + w * 0.06, x1 - w * 0.06 - size):
            cv2.rectangle(
                image, (int(lx), light_y), (int(lx) + size, light_y + size), (30, 30, 200), -1
            )

    # Shading: lighting gradient, colour cast, blotches and shadows at 1/4 resolution.
    sh, sw = max(height // 4, 2), max(width // 4, 2)
    gain = rng.uniform(0.4, 0.6) if rng.random() < 0.1 else rng.uniform(0.7, 1.25)
    gy, gx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    tilt = rng.uniform(-0.2, 0.2) * (gx / sw - 0.5) + rng.uniform(-0.15, 0.15) * (gy / sh - 0.5)
    blotch = cv2.resize(
        rng.uniform(-1, 1, (6, 10)).astype(np.float32), (sw, sh), interpolation=cv2.INTER_CUBIC
    ) * rng.uniform(0.0, 0.12)
    shade = (gain * (1.0 + tilt + blotch)).astype(np.float32)
    mask = np.zeros((sh, sw), dtype=np.uint8)
    n_shadows = int(rng.choice((0, 1, 2, 3), p=(0.35, 0.3, 0.2, 0.15)))
    for _ in range(n_shadows):
        z0 = rng.uniform(4.0, 40.0)
        depth = rng.uniform(1.0, 8.0)
        a = rng.uniform(road_left - 3, road_right)
        b = a + rng.uniform(2.0, 12.0)
        quad = _strip(camera, a, b, z0, z0 + depth, 8) / 4.0
        cv2.fillPoly(mask, [_poly(quad)], 255, cv2.LINE_AA, _SHIFT)
    if n_shadows:
        darkness = rng.uniform(0.3, 0.55)
        soft = cv2.GaussianBlur(mask, (0, 0), rng.uniform(0.5, 2.0)).astype(np.float32) / 255.0
        shade *= 1.0 - darkness * soft
    tint = rng.uniform(0.93, 1.07, 3).astype(np.float32)
    shade_map = np.clip(shade[:, :, None] * tint * 128.0, 0, 255).astype(np.uint8)
    shade_map = cv2.resize(shade_map, (width, height), interpolation=cv2.INTER_LINEAR)
    image = cv2.multiply(image, shade_map, scale=1.0 / 128.0)

    # Grain.
    sigma = rng.uniform(1.5, 4.5)
    image = cv2.addWeighted(
        image, 1.0, textures.grain_crop(rng), sigma / 16.0, -128.0 * sigma / 16.0
    )

    lanes = [labels[k] for k in drawn]
    info = {
        "lines": len(drawn),
        "styles": styles,
        "vehicles": len(vehicles),
        "shadows": n_shadows,
        "curve": camera.curve,
        "gain": float(gain),
    }
    return Scene(image=image, h_samples=[int(r) for r in rows], lanes=lanes, info=info)
