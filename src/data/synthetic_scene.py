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
    """The rendered BGR image, its TuSimple label, a description of what was drawn and the
    painted lines' geometry (for labels in other formats: ``synthetic_formats``)."""

    image: np.ndarray
    h_samples: list[int]
    lanes: list[list[int]]
    info: dict
    lines: list[PaintedLine] = field(default_factory=list)
    camera: Camera | None = None


@dataclass(frozen=True)
class PaintedLine:
    """One painted (and labelled) line: its name as LLAMAS gives it (l0 / r0 = the lines left
    / right of the camera's lane, l1 / r1 the next ones), lateral offset (m), visible up to
    ``z_far`` (m), painted over ``[z0, z1]`` depth intervals (one per dash; one if solid)."""

    name: str
    lateral: float
    z_far: float
    pieces: tuple[tuple[float, float], ...]


# Palettes (BGR) varied per image.
SKY_TOPS = ((200, 150, 105), (175, 170, 165), (150, 150, 175))
GROUNDS = ((60, 120, 80), (80, 140, 150), (70, 95, 115), (130, 135, 140))


def _colour(
    rng: np.random.Generator, low: tuple[float, ...], high: tuple[float, ...]
) -> tuple[float, float, float]:
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


@dataclass
class _Layout:
    """The sampled road: camera, line offsets (metres, left to right) and visibility."""

    camera: Camera
    lane_width: float
    ego: int  # index of the line left of the camera's lane
    offset: float  # camera position relative to line 0
    laterals: list[float]
    z_far: float  # visibility distance of the lines
    labels: list[list[int]]  # TuSimple xs of every line
    drawn: list[int]  # lines with enough labelled rows (painted and labelled)


# Number of painted lines per image and their probabilities (TuSimple-like by default).
LINE_COUNTS = ((2, 3, 4, 5), (0.15, 0.3, 0.3, 0.25))


def _sample_layout(
    rng: np.random.Generator,
    width: int,
    height: int,
    rows: np.ndarray,
    line_counts: tuple[tuple[int, ...], tuple[float, ...]] = LINE_COUNTS,
) -> _Layout:
    for _ in range(100):
        camera = _sample_camera(rng, width, height)
        lane_width = rng.uniform(3.0, 4.0)
        n_lines = int(rng.choice(line_counts[0], p=line_counts[1]))
        ego = int(rng.integers(n_lines - 1))
        offset = (ego + rng.uniform(0.2, 0.8)) * lane_width
        laterals = [k * lane_width + rng.uniform(-0.08, 0.08) - offset for k in range(n_lines)]
        z_far = rng.uniform(45.0, 90.0)
        labels = [_label(camera, lateral, z_far, rows) for lateral in laterals]
        drawn = [k for k, xs in enumerate(labels) if sum(x >= 0 for x in xs) >= MIN_LABEL_POINTS]
        if len(drawn) >= 2:
            return _Layout(camera, lane_width, ego, offset, laterals, z_far, labels, drawn)
    raise RuntimeError("could not sample a scene with two visible lanes")  # pragma: no cover


def _draw_background(rng: np.random.Generator, image: np.ndarray, camera: Camera) -> None:
    """Sky (clear, overcast or hazy; brighter towards the horizon), roadside ground (grass,
    dry grass, dirt or concrete) and a distant tree line / hills."""
    height, width = image.shape[:2]
    horizon = max(int(round(camera.horizon)), 1)
    top = np.array(SKY_TOPS[int(rng.choice(3, p=(0.45, 0.4, 0.15)))]) + rng.uniform(-15, 15, 3)
    bottom = np.clip(top + rng.uniform(25, 60), 0, 255)
    ramp = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[:, None, None]
    column = (top + (bottom - top) * ramp).astype(np.uint8)  # (horizon, 1, 3)
    image[:horizon] = cv2.resize(column, (width, horizon), interpolation=cv2.INTER_NEAREST)
    ground = np.array(GROUNDS[int(rng.integers(len(GROUNDS)))]) + rng.uniform(-12, 12, 3)
    cv2.rectangle(image, (0, horizon), (width, height), _tuple(ground), -1)
    ridge_x = np.linspace(-10, width + 10, 24)
    ridge_y = camera.horizon - rng.uniform(0.0, 0.07, 24) * height * rng.uniform(0.3, 1.0)
    base = [[width + 10, camera.horizon + 3], [-10, camera.horizon + 3]]
    ridge = np.concatenate((np.stack((ridge_x, ridge_y), 1), base))
    ridge_colour = np.array((45, 70, 50)) * rng.uniform(0.6, 1.4) + rng.uniform(-10, 10, 3)
    cv2.fillPoly(image, [_poly(ridge)], _tuple(ridge_colour), cv2.LINE_AA, _SHIFT)


def _draw_road(
    rng: np.random.Generator, image: np.ndarray, road: _Layout
) -> tuple[np.ndarray, float, float, list[str], list[PaintedLine]]:
    """Asphalt with shoulders, dark tyre marks (line-like distractors) and the painted lines
    (solid or dashed, white or yellow, worn). Returns (asphalt colour, road edges, styles,
    painted lines)."""
    camera, laterals = road.camera, road.laterals
    z_near = camera.depth(np.array(image.shape[0] + 30.0))
    asphalt = rng.uniform(65, 135) + rng.uniform(-5, 5, 3)
    left_edge = laterals[0] - rng.uniform(0.4, 2.5)
    right_edge = laterals[-1] + rng.uniform(0.4, 2.5)
    surface = _strip(camera, left_edge, right_edge, z_near, min(road.z_far * 1.8, 220.0), 60)
    cv2.fillPoly(image, [_poly(surface)], _tuple(asphalt), cv2.LINE_AA, _SHIFT)
    for _ in range(int(rng.integers(0, 3))):
        lateral = rng.uniform(laterals[0], laterals[-1])
        band = rng.uniform(0.3, 0.7)
        mark = _strip(camera, lateral - band / 2, lateral + band / 2, z_near, road.z_far * 0.8, 30)
        cv2.fillPoly(
            image, [_poly(mark)], _tuple(asphalt * rng.uniform(0.8, 0.92)), cv2.LINE_AA, _SHIFT
        )
    styles, painted = [], []
    for k in road.drawn:
        paint_w = rng.uniform(0.10, 0.20)
        if rng.random() < (0.35 if k == road.drawn[0] else 0.1):
            paint = np.array(_colour(rng, (40, 170, 200), (90, 215, 245)))  # yellow (BGR)
        else:
            paint = np.array(_colour(rng, (205, 205, 205), (250, 250, 250)))
        wear = rng.uniform(0.55, 1.0)
        colour = _tuple(asphalt * (1 - wear) + paint * wear)
        dashed = rng.random() < (0.3 if k in (road.drawn[0], road.drawn[-1]) else 0.65)
        styles.append("dashed" if dashed else "solid")
        left, right = laterals[k] - paint_w / 2, laterals[k] + paint_w / 2
        if dashed:
            dash = rng.uniform(2.5, 3.5)
            period = dash + rng.uniform(5.0, 9.0)
            polys, pieces = [], []
            for z0 in np.arange(-rng.uniform(0, period), road.z_far, period):
                a, b = max(z0, z_near), min(z0 + dash, road.z_far)
                if b > a:
                    polys.append(_poly(_strip(camera, left, right, a, b, 6)))
                    pieces.append((float(a), float(b)))
        else:
            polys = [_poly(_strip(camera, left, right, z_near, road.z_far, 48))]
            pieces = [(float(z_near), float(road.z_far))]
        if polys:
            cv2.fillPoly(image, polys, colour, cv2.LINE_AA, _SHIFT)
        name = f"l{road.ego - k}" if k <= road.ego else f"r{k - road.ego - 1}"
        painted.append(PaintedLine(name, float(laterals[k]), float(road.z_far), tuple(pieces)))
    return asphalt, left_edge, right_edge, styles, painted


def _draw_vehicles(rng: np.random.Generator, image: np.ndarray, road: _Layout) -> int:
    """0-3 vehicle-like boxes (body, rear window, tail lights, shadow), far to near, occluding
    the lines behind them; none closer than 18 m in the camera's own lane."""
    camera = road.camera
    vehicles = []
    for _ in range(int(rng.choice((0, 1, 2, 3), p=(0.3, 0.35, 0.25, 0.1)))):
        slot = int(rng.integers(-1, len(road.laterals)))
        z = rng.uniform(18.0 if slot == road.ego else 8.0, 80.0)
        centre = (slot + 0.5) * road.lane_width - road.offset + rng.uniform(-0.3, 0.3)
        vehicles.append((z, centre))
    for z, centre in sorted(vehicles, reverse=True):
        truck = rng.random() < 0.15
        if truck:
            w_m, h_m = 2.5, rng.uniform(2.8, 3.6)
        else:
            w_m, h_m = rng.uniform(1.7, 2.0), rng.uniform(1.3, 1.8)
        base = float(camera.row(np.array(z)))
        xc = float(camera.column(centre, np.array(z)))
        w, h = camera.focal * w_m / z, camera.focal * h_m / z
        body = _colour(rng, (20, 20, 20), (230, 230, 230))
        x0, x1, y0 = xc - w / 2, xc + w / 2, base - h
        axes = (int(w * 0.6) + 1, max(int(h * 0.08), 1))
        cv2.ellipse(image, (int(xc), int(base)), axes, 0, 0, 360, (20, 20, 20), -1, cv2.LINE_AA)
        cv2.rectangle(image, (int(x0), int(y0)), (int(x1), int(base - h * 0.05)), body, -1)
        if not truck:
            glass = tuple(v * 0.35 for v in body)
            top_left = (int(x0 + w * 0.1), int(y0 + h * 0.08))
            cv2.rectangle(image, top_left, (int(x1 - w * 0.1), int(y0 + h * 0.4)), glass, -1)
        light_y, size = int(base - h * 0.45), max(int(w * 0.08), 1)
        for lx in (int(x0 + w * 0.06), int(x1 - w * 0.06) - size):
            cv2.rectangle(image, (lx, light_y), (lx + size, light_y + size), (30, 30, 200), -1)
    return len(vehicles)


def _shade(
    rng: np.random.Generator, image: np.ndarray, camera: Camera, left: float, right: float
) -> tuple[np.ndarray, int, float]:
    """Lighting at 1/4 resolution applied in one multiply: global gain (10 % dusk-dark),
    left-right and top-bottom gradients, soft blotches, shadow bands across the road, colour
    cast. Returns (image, number of shadows, gain)."""
    height, width = image.shape[:2]
    sh, sw = max(height // 4, 2), max(width // 4, 2)
    gain = rng.uniform(0.4, 0.6) if rng.random() < 0.1 else rng.uniform(0.7, 1.25)
    gy, gx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    tilt = rng.uniform(-0.2, 0.2) * (gx / sw - 0.5) + rng.uniform(-0.15, 0.15) * (gy / sh - 0.5)
    blotch = cv2.resize(
        rng.uniform(-1, 1, (6, 10)).astype(np.float32), (sw, sh), interpolation=cv2.INTER_CUBIC
    )
    shade = (gain * (1.0 + tilt + blotch * rng.uniform(0.0, 0.12))).astype(np.float32)
    n_shadows = int(rng.choice((0, 1, 2, 3), p=(0.35, 0.3, 0.2, 0.15)))
    if n_shadows:
        mask = np.zeros((sh, sw), dtype=np.uint8)
        for _ in range(n_shadows):
            z0 = rng.uniform(4.0, 40.0)
            a = rng.uniform(left - 3, right)
            band = _strip(camera, a, a + rng.uniform(2.0, 12.0), z0, z0 + rng.uniform(1, 8), 8)
            cv2.fillPoly(mask, [_poly(band / 4.0)], 255, cv2.LINE_AA, _SHIFT)
        darkness = rng.uniform(0.3, 0.55)
        soft = cv2.GaussianBlur(mask, (0, 0), rng.uniform(0.5, 2.0)).astype(np.float32) / 255.0
        shade *= 1.0 - darkness * soft
    tint = rng.uniform(0.93, 1.07, 3).astype(np.float32)
    shade_map = np.clip(shade[:, :, None] * tint * 128.0, 0, 255).astype(np.uint8)
    shade_map = cv2.resize(shade_map, (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.multiply(image, shade_map, scale=1.0 / 128.0), n_shadows, float(gain)


def render_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    textures: SceneTextures,
    line_counts: tuple[tuple[int, ...], tuple[float, ...]] = LINE_COUNTS,
) -> Scene:
    """Draw one road image (BGR uint8) and its TuSimple label; see the module docstring.
    ``line_counts``: the numbers of painted lines to draw from, with their probabilities."""
    rows = np.array(h_samples_for(height), dtype=np.float64)
    road = _sample_layout(rng, width, height, rows, line_counts)
    image = np.empty((height, width, 3), dtype=np.uint8)
    _draw_background(rng, image, road.camera)
    _, left, right, styles, painted = _draw_road(rng, image, road)
    vehicles = _draw_vehicles(rng, image, road)
    image, shadows, gain = _shade(rng, image, road.camera, left, right)
    sigma = rng.uniform(1.5, 4.5)  # grain
    image = cv2.addWeighted(image, 1.0, textures.grain_crop(rng), sigma / 16, -8.0 * sigma)
    info = {
        "lines": len(road.drawn),
        "styles": styles,
        "vehicles": vehicles,
        "shadows": shadows,
        "curve": road.camera.curve,
        "gain": gain,
    }
    lanes = [road.labels[k] for k in road.drawn]
    return Scene(
        image=image,
        h_samples=[int(r) for r in rows],
        lanes=lanes,
        info=info,
        lines=painted,
        camera=road.camera,
    )
