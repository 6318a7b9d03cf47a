"""synthetic-scenes: the embedded BEV detection demo set (LiDAR + one camera), rendered on first use, no download.

**Synthetic**. Each sample is a street-like scene seen from a vehicle: a ground plane with a small
random tilt and height, and 2-8 non-overlapping boxes of three classes with jittered sizes
(``car`` ~4.5 x 1.9 x 1.6 m, ``pedestrian`` ~0.7 x 0.7 x 1.8 m, ``bicycle`` ~1.8 x 0.7 x 1.6 m, a
cyclist; the nuScenes detection names, so ``NuScenesMetric`` scores them), a random yaw and a
velocity along the heading (pedestrians slow, some objects parked). Boxes lie inside the camera's
field of view and the BEV grid, so both modalities can see every object (unless it is occluded).

* LiDAR: rays from a sensor at the origin, ~1.8 m above the ground (``beams`` rows between
  ``beam_elevation`` degrees, ``azimuth_steps`` columns over the forward half), cast against the
  ground and the boxes; the nearest hit is a point (only the visible surfaces get points, occluded
  objects few or none). Density falls with range (the ray geometry, plus a drop-out growing with
  range), ranges get Gaussian noise, the intensity depends on the surface (ground, each class,
  roofs darker); the time-lag column is 0 (one sweep).
* Camera ``CAM_FRONT``: a pinhole camera at (0.4, 0, -0.3) m in the LiDAR frame looking along +x,
  pitched 5° down, ``hfov_deg`` horizontal field of view, square pixels, principal point at the
  image centre. The image is the sky/ground background (sky gradient, ground shaded with distance
  and a world-anchored texture) with the boxes' visible faces painted far to near (painter's order),
  class colours (car red, pedestrian blue, bicycle green) shaded by the face's orientation and
  faded with depth, plus pixel noise.

The BEV grid that fits (camera field of view and LiDAR range) is stored in ``meta.json`` as
``"grid": {"point_cloud_range": [x_min, y_min, z_min, x_max, y_max, z_max], "cell_size": c}``:
x in [0, 38.4] m, y in [-19.2, 19.2] m, 0.6 m cells (64 x 64; ``BEVGrid.build(range, 0.6, 2)`` is
32 x 32). The build is deterministic for a given :class:`SyntheticScenesSpec` and cached under
``$XMODAL_DATA`` (or ``~/.cache/xmodal``) in xmodal's detection format (docs/data_format.md).
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
from PIL import Image, ImageDraw

from xmodal.data.cache import BuildSpec, cached_build, spec_from_config
from xmodal.data.detection import DetectionDataset, box_corners, write_detection_dataset
from xmodal.data.splits import random_splits
from xmodal.registry import DATASETS
from xmodal.version import __version__

FORMAT_VERSION = "1"
CLASSES = ("car", "pedestrian", "bicycle")
CAMERA = "CAM_FRONT"
CLASS_SIZES = {"car": (4.5, 1.9, 1.6), "pedestrian": (0.7, 0.7, 1.8), "bicycle": (1.8, 0.7, 1.6)}  # dx, dy, dz
CLASS_PROBS = (0.5, 0.3, 0.2)
MAX_SPEED = {"car": 12.0, "pedestrian": 1.5, "bicycle": 6.0}  # m/s
STATIC_PROB = 0.3  # parked cars, standing pedestrians
CLASS_COLOURS = {"car": (210, 45, 40), "pedestrian": (45, 75, 220), "bicycle": (40, 185, 60)}
INTENSITY = {"ground": 15.0, "car": 150.0, "pedestrian": 50.0, "bicycle": 100.0}  # 0-255, as nuScenes
ROOF_INTENSITY = 0.6  # roofs (top faces) reflect less than the sides
SKY_TOP, SKY_HORIZON = np.array([85.0, 125.0, 200.0]), np.array([165.0, 190.0, 220.0])
GROUND, FOG = np.array([105.0, 104.0, 98.0]), np.array([175.0, 182.0, 192.0])
CAMERA_POSITION = (0.4, 0.0, -0.3)  # in the LiDAR frame, metres
CAMERA_PITCH_DEG = 5.0  # looking down
# bottom, top, then the sides rear (-x), left (+y), front (+x), right (-y): corner indices of box_corners
FACES = ((0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7))
LIGHT = np.array([-0.3, 0.45, 1.0]) / np.linalg.norm([-0.3, 0.45, 1.0])


@dataclasses.dataclass(frozen=True)
class SyntheticScenesSpec(BuildSpec):
    """Everything a build depends on; its hash names the cache directory."""

    format_version: ClassVar[str] = FORMAT_VERSION
    num_samples: int = 800
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    boxes: tuple[int, int] = (2, 8)  # min, max per scene
    size_jitter: float = 0.1  # each side times U(1 - j, 1 + j)
    lidar_height: float = 1.8  # sensor above the ground, metres
    ground_height_std: float = 0.05
    ground_slope: float = 0.01  # |dz/dx|, |dz/dy| at most (about 0.6°)
    beams: int = 24
    beam_elevation: tuple[float, float] = (-20.0, 2.0)  # degrees; beams denser towards the top
    azimuth_steps: int = 240  # over [-90°, 90°]
    max_range: float = 45.0
    range_noise: float = 0.02  # metres, along the ray
    far_dropout: float = 0.5  # drop-out probability at max_range (grows with range squared)
    image_width: int = 192
    image_height: int = 96
    hfov_deg: float = 70.0
    pixel_noise: float = 4.0  # 0-255 units
    point_cloud_range: tuple[float, float, float, float, float, float] = (0.0, -19.2, -3.0, 38.4, 19.2, 2.0)
    cell_size: float = 0.6



def camera_calibration(spec: SyntheticScenesSpec) -> tuple[np.ndarray, np.ndarray]:
    """The camera's intrinsics (3, 3) and lidar2cam (4, 4). Pixel centres are at integer coordinates,
    so the principal point of a W x H image is ((W - 1) / 2, (H - 1) / 2) and the image edges
    u = -0.5, W - 0.5 lie at ±hfov / 2."""
    focal = 0.5 * spec.image_width / math.tan(math.radians(spec.hfov_deg) / 2)
    k = np.array([[focal, 0.0, (spec.image_width - 1) / 2], [0.0, focal, (spec.image_height - 1) / 2],
                  [0.0, 0.0, 1.0]])
    axes = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])  # LiDAR (x fwd, y left, z up) -> cam
    p = math.radians(CAMERA_PITCH_DEG)
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(p), -math.sin(p)], [0.0, math.sin(p), math.cos(p)]])
    rotation = pitch @ axes  # the optical axis (cos p, 0, -sin p) in the LiDAR frame maps to (0, 0, 1)
    lidar2cam = np.eye(4)
    lidar2cam[:3, :3] = rotation
    lidar2cam[:3, 3] = -rotation @ np.asarray(CAMERA_POSITION)
    return k, lidar2cam


@dataclasses.dataclass
class Scene:
    ground: tuple[float, float, float]  # (height h, slope a, slope b): ground z = -h + a x + b y
    boxes: np.ndarray  # (M, 9)
    labels: list[str]

    def ground_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        h, a, b = self.ground
        return -h + a * x + b * y


def _place_boxes(rng: np.random.Generator, spec: SyntheticScenesSpec, ground: tuple[float, float, float]
                 ) -> tuple[np.ndarray, list[str]]:
    x_min, y_min, _, x_max, y_max, _ = spec.point_cloud_range
    tan_half = math.tan(math.radians(spec.hfov_deg) / 2)
    count = int(rng.integers(spec.boxes[0], spec.boxes[1] + 1))
    boxes, labels, discs = [], [], []
    for _ in range(count * 30):  # rejection sampling; a crowded scene may end with fewer than ``count``
        if len(boxes) == count:
            break
        label = CLASSES[int(rng.choice(len(CLASSES), p=CLASS_PROBS))]
        size = np.asarray(CLASS_SIZES[label]) * rng.uniform(1 - spec.size_jitter, 1 + spec.size_jitter, size=3)
        radius = 0.5 * math.hypot(size[0], size[1])
        # x uniform, then y uniform across the part of the grid the camera sees at that x (the whole
        # footprint inside the field of view): near objects as frequent as far ones
        x = rng.uniform(max(x_min, 4.0) + radius, x_max - radius)
        y_limit = min((x - radius) * tan_half, y_max, -y_min) - radius
        if y_limit <= 0:
            continue
        y = rng.uniform(-y_limit, y_limit)
        if any(math.hypot(x - cx, y - cy) < radius + r + 0.5 for cx, cy, r in discs):
            continue
        yaw = rng.uniform(-math.pi, math.pi)
        speed = 0.0 if rng.random() < STATIC_PROB else rng.uniform(0.0, MAX_SPEED[label])
        z = -ground[0] + ground[1] * x + ground[2] * y + size[2] / 2
        boxes.append([x, y, z, *size, yaw, speed * math.cos(yaw), speed * math.sin(yaw)])
        labels.append(label)
        discs.append((x, y, radius))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 9), labels


def make_scene(rng: np.random.Generator, spec: SyntheticScenesSpec) -> Scene:
    ground = (spec.lidar_height + float(rng.normal(0.0, spec.ground_height_std)),
              float(rng.uniform(-spec.ground_slope, spec.ground_slope)),
              float(rng.uniform(-spec.ground_slope, spec.ground_slope)))
    boxes, labels = _place_boxes(rng, spec, ground)
    return Scene(ground, boxes, labels)


def _ray_box_hits(origin: np.ndarray, dirs: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entry distance (R, M) of each ray into each box (inf: missed; slab test in the box frame) and the
    axis of the entry face (0 x, 1 y, 2 z)."""
    if not len(boxes):
        return np.full((len(dirs), 0), np.inf), np.zeros((len(dirs), 0), dtype=np.int64)
    cos, sin = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    rel = origin[None, :] - boxes[:, :3]  # (M, 3)
    o = np.stack([rel[:, 0] * cos + rel[:, 1] * sin, -rel[:, 0] * sin + rel[:, 1] * cos, rel[:, 2]], axis=-1)
    d = np.stack([dirs[:, None, 0] * cos + dirs[:, None, 1] * sin, -dirs[:, None, 0] * sin + dirs[:, None, 1] * cos,
                  np.broadcast_to(dirs[:, None, 2], (len(dirs), len(boxes)))], axis=-1)  # (R, M, 3)
    half = 0.5 * boxes[:, 3:6]
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o)[None] / d
        t2 = (half - o)[None] / d
    near, far = np.minimum(t1, t2), np.maximum(t1, t2)
    t_in, t_out = near.max(axis=-1), far.min(axis=-1)
    hit = (t_in <= t_out) & (t_in > 0)
    return np.where(hit, t_in, np.inf), near.argmax(axis=-1)


def lidar_sweep(scene: Scene, rng: np.random.Generator, spec: SyntheticScenesSpec) -> tuple[np.ndarray, np.ndarray]:
    """(N, 5) float32 points and the number of points on each box (M,)."""
    # denser near the horizon, where the objects are (as the beams of automotive LiDARs)
    low, high = spec.beam_elevation
    elevation = np.radians(high - (high - low) * np.linspace(1.0, 0.0, spec.beams) ** 1.5)
    azimuth = np.radians(np.linspace(-90.0, 90.0, spec.azimuth_steps))
    el, az = np.meshgrid(elevation, azimuth, indexing="ij")
    dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1).reshape(-1, 3)
    h, a, b = scene.ground
    denom = dirs[:, 2] - a * dirs[:, 0] - b * dirs[:, 1]
    with np.errstate(divide="ignore"):
        t_ground = np.where(denom < 0, -h / denom, np.inf)
    t_box, axis = _ray_box_hits(np.zeros(3), dirs, scene.boxes)
    t_all = np.concatenate([t_ground[:, None], t_box], axis=1)  # column 0: ground, 1 + m: box m
    target = t_all.argmin(axis=1)
    t = t_all[np.arange(len(dirs)), target]
    keep = t < spec.max_range
    keep &= rng.random(len(dirs)) >= spec.far_dropout * np.minimum(t / spec.max_range, 1.0) ** 2
    dirs, t, target = dirs[keep], t[keep], target[keep]
    box_axis = (axis[keep][np.arange(len(t)), np.maximum(target - 1, 0)] if len(scene.boxes)
                else np.zeros(len(t), dtype=np.int64))
    t = t + rng.normal(0.0, spec.range_noise, size=len(t))
    xyz = dirs * t[:, None]
    names = ["ground", *scene.labels]
    intensity = np.array([INTENSITY[names[i]] for i in target])
    intensity *= np.where((target > 0) & (box_axis == 2), ROOF_INTENSITY, 1.0)
    intensity = np.clip(intensity + rng.normal(0.0, 8.0, size=len(t)), 0.0, 255.0)
    points = np.concatenate([xyz, intensity[:, None], np.zeros((len(t), 1))], axis=1).astype(np.float32)
    counts = np.bincount(target, minlength=len(scene.boxes) + 1)[1:]
    return points, counts


def render_camera(scene: Scene, rng: np.random.Generator, spec: SyntheticScenesSpec) -> bytes:
    """The CAM_FRONT image as PNG bytes."""
    k, lidar2cam = camera_calibration(spec)
    width, height = spec.image_width, spec.image_height
    rotation, origin = lidar2cam[:3, :3], np.asarray(CAMERA_POSITION)
    # background: each pixel's ray in the LiDAR frame meets the ground or goes to the sky
    u, v = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    rays_cam = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(k).T
    rays = rays_cam @ rotation  # R^T applied to each row
    h, a, b = scene.ground
    normal = np.array([-a, -b, 1.0])
    denom = rays @ normal
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -(origin @ normal + h) / denom
    ground = (denom < 0) & (t > 0)
    hit = origin + rays * np.where(ground, t, 0.0)[..., None]
    dist = np.where(ground, np.hypot(hit[..., 0], hit[..., 1]), np.inf)
    texture = 1.0 + 0.06 * np.sign(np.sin(hit[..., 0] * math.pi / 2.5) * np.sin(hit[..., 1] * math.pi / 2.5))
    fog = (1.0 - np.exp(-dist / 80.0))[..., None]
    ground_rgb = (GROUND * texture[..., None]) * (1 - fog) + FOG * fog
    up = np.clip(rays[..., 2] / np.linalg.norm(rays, axis=-1) * 3.0, 0.0, 1.0)[..., None]
    sky_rgb = SKY_HORIZON * (1 - up) + SKY_TOP * up
    pixels = np.where(ground[..., None], ground_rgb, sky_rgb)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for polygon, colour in _visible_faces(scene, k, lidar2cam):
        draw.polygon(polygon, fill=colour)
    noisy = np.asarray(image, dtype=np.float64) + rng.normal(0.0, spec.pixel_noise, size=(height, width, 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(np.round(noisy), 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _visible_faces(scene: Scene, k: np.ndarray, lidar2cam: np.ndarray) -> Iterator[tuple[list, tuple]]:
    """The boxes' faces that face the camera, far to near: (pixel polygon, shaded colour)."""
    origin = np.asarray(CAMERA_POSITION)
    faces = []
    for box, corners, label in zip(scene.boxes, box_corners(scene.boxes), scene.labels, strict=True):
        cam = corners @ lidar2cam[:3, :3].T + lidar2cam[:3, 3]
        for face in FACES:
            centroid = corners[list(face)].mean(axis=0)
            normal = centroid - box[:3]
            normal /= np.linalg.norm(normal)
            if normal @ (centroid - origin) >= 0 or (cam[list(face), 2] < 0.1).any():  # back face / behind
                continue
            depth = float(np.linalg.norm(centroid - origin))
            shade = 0.55 + 0.45 * max(float(normal @ LIGHT), 0.0)
            fog = 1.0 - math.exp(-depth / 80.0)
            colour = np.asarray(CLASS_COLOURS[label]) * shade * (1 - fog) + FOG * fog
            pix = cam[list(face)] @ k.T
            polygon = [(float(p[0] / p[2]), float(p[1] / p[2])) for p in pix]
            faces.append((depth, polygon, tuple(int(c) for c in np.clip(np.round(colour), 0, 255))))
    faces.sort(key=lambda f: -f[0])
    for _, polygon, colour in faces:
        yield polygon, colour


def _samples(spec: SyntheticScenesSpec) -> Iterator[dict]:
    k, lidar2cam = camera_calibration(spec)
    for i in range(spec.num_samples):
        rng = np.random.default_rng([spec.seed, i])  # per sample: any sample can be rebuilt alone
        scene = make_scene(rng, spec)
        points, counts = lidar_sweep(scene, rng, spec)
        image = render_camera(scene, rng, spec)
        yield {"token": f"{i:06d}", "points": points,
               "cams": {CAMERA: {"image": image, "intrinsics": k, "lidar2cam": lidar2cam}},
               "boxes": scene.boxes, "labels": scene.labels, "num_points": counts.tolist(),
               "ego_translation": [0.0, 0.0, 0.0]}


def _write(out: Path, spec: SyntheticScenesSpec) -> Path:
    splits = random_splits(spec.num_samples, spec.split_fractions, np.random.default_rng([spec.seed, 0, 1]),
                           drop_empty=True)
    source = ("SYNTHETIC: ray-cast LiDAR sweeps and rendered front-camera images of random box scenes "
              "(xmodal.data.synthetic_scenes); not real sensor data")
    extra = {"grid": {"point_cloud_range": list(spec.point_cloud_range), "cell_size": spec.cell_size},
             "build": {**dataclasses.asdict(spec), "xmodal_version": __version__}}
    return write_detection_dataset(out, _samples(spec), splits, CLASSES, name="synthetic-scenes", source=source,
                                   cameras=[CAMERA], force=True, extra_meta=extra)


def build_synthetic_scenes(spec: SyntheticScenesSpec | None = None, root: str | Path | None = None,
                           force: bool = False) -> Path:
    """Build synthetic-scenes (or reuse the cached build) and return its directory."""
    spec = spec or SyntheticScenesSpec()
    return cached_build("synthetic_scenes", spec.key(), lambda target: _write(target, spec), root, force)


@DATASETS.register_module()
class SyntheticScenesDataset(DetectionDataset):
    """A synthetic-scenes split, built into the cache on first use; ``data_root`` overrides the cache.
    Other keyword arguments are :class:`SyntheticScenesSpec` fields (e.g. ``num_samples=40``)."""

    def __init__(self, split: str = "train", cameras: list[str] | None = None, load_points: bool = True,
                 load_images: bool = True, image_size: int | tuple[int, int] | None = None,
                 data_root: str | None = None, seed: int = 0, with_info: bool = False, subset: dict | None = None,
                 labelled: dict | None = None, **spec_overrides) -> None:
        if data_root is None:
            spec = spec_from_config(SyntheticScenesSpec, seed, spec_overrides)
            data_root = build_synthetic_scenes(spec)
        super().__init__(data_root, split=split, cameras=cameras, load_points=load_points, load_images=load_images,
                         image_size=image_size, with_info=with_info, subset=subset, labelled=labelled)
