"""nuScenes (Caesar et al., CVPR 2020) -> xmodal's 3-D detection format, read without nuscenes-devkit.

Input: a nuScenes root holding the metadata folder ``v1.0-mini/`` or ``v1.0-trainval/`` (the tables
``sample``, ``sample_data``, ``sample_annotation``, ``calibrated_sensor``, ``ego_pose``, ``category``,
``instance``, ``attribute``, ``sensor``, ``log`` and ``scene``, one ``<table>.json`` list each),
``samples/LIDAR_TOP/*.pcd.bin`` (float32 x 5: x, y, z, intensity, ring), ``samples/CAM_*/*.jpg`` and,
with ``--sweeps``, ``sweeps/LIDAR_TOP/*.pcd.bin``.

For each keyframe sample of the chosen scenes, in scene order and then in time:

* points: the LIDAR_TOP keyframe as x, y, z, intensity (0-255) and time lag 0 (the ring index is
  dropped); with ``--sweeps N`` also the N previous LIDAR_TOP sweeps (following ``prev``), moved
  into the keyframe's LiDAR frame through both ego poses, without the points within 1 m (|x| and
  |y|) of their own sensor (the car's roof), each with its time lag in seconds, as the devkit's
  ``LidarPointCloud.from_file_multisweep`` and mmdet3d's multi-sweep loading;
* cameras (all six, or ``--cameras``): the keyframe image (hard-linked), its intrinsics and
  ``lidar2cam`` = cam<-ego(cam time) <- global <- ego(lidar time) <- lidar, composed from the
  ``calibrated_sensor`` and ``ego_pose`` records of both sample_data;
* boxes: every annotation whose category maps to one of the 10 detection classes
  (``DETECTION_MAPPING``, the devkit's ``category_to_detection_name``; the others are dropped),
  moved from the global frame into the LiDAR frame: centre, ``dx`` = length (``size[1]``), ``dy`` =
  width (``size[0]``, nuScenes sizes are [w, l, h]), ``dz`` = height, yaw of the box's x axis
  counter-clockwise from the LiDAR's +x; velocity as the devkit's ``box_velocity``: the difference of
  the ``prev``/``next`` annotations' centres over their samples' time difference (central when both
  exist; no estimate beyond 1.5 s, 3 s for a central difference), its x-y part rotated into the
  LiDAR frame (z set to 0 first, as mmdet3d). Where there is no estimate the velocity is stored as
  0 and the box listed in the sample's ``velocity_missing``; ``meta.json`` counts them.
* per sample also ``num_points`` (``num_lidar_pts``), ``num_radar_points``, ``attributes`` (the
  attribute name or ""), ``ego_translation`` (the ego position at the LiDAR time, global frame),
  ``lidar2ego``, ``ego2global``, ``scene`` and ``timestamp``.

Splits are over scenes. v1.0-mini: the devkit's ``mini_train`` (8 scenes) and ``mini_val`` (2),
written below. v1.0-trainval (or any other version): ``--split-file`` a JSON ``{"train": [scene
names], "val": [...], ...}`` (any split names; unlisted scenes are left out), or ``--val-scenes`` a
text file of scene names, one a line (``#`` comments allowed), which become ``val`` with every other
scene ``train``. The official 700/150 lists are ``train`` and ``val`` in the devkit's
``python-sdk/nuscenes/utils/splits.py``::

    python -c "import json; from nuscenes.utils import splits; print(json.dumps({'train': splits.train, \\
        'val': splits.val}))" > nuscenes_trainval_split.json

Usage::

    python data_prep/nuscenes.py --root /data/nuscenes --version v1.0-mini --out data/nuscenes-mini
    python data_prep/nuscenes.py --root /data/nuscenes --version v1.0-trainval \\
        --split-file nuscenes_trainval_split.json --out data/nuscenes --sweeps 9
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xmodal.apis.errors import cli_errors  # noqa: E402
from xmodal.data.integrity import truncation  # noqa: E402
from xmodal.data.provenance import provenance  # noqa: E402
from xmodal.data.skipped import SkippedSources, add_skip_bad_argument  # noqa: E402
from xmodal.data.writer import DatasetExistsError, refuse_existing, sha256_of  # noqa: E402
from xmodal.errors import DatasetFormatError  # noqa: E402
from xmodal.evaluation.detection import DETECTION_NAMES  # noqa: E402

TABLES = ("sample", "sample_data", "sample_annotation", "calibrated_sensor", "ego_pose", "category", "instance",
          "attribute", "sensor", "log", "scene")
LIDAR = "LIDAR_TOP"
CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
RAW_POINT_DIMS = 5  # .pcd.bin: x, y, z, intensity, ring index
MAX_TIME_DIFF = 1.5  # s; box_velocity gives no estimate beyond (twice that for a central difference)
CLOSE_RADIUS = 1.0  # m; sweep points this close to their sensor (|x| and |y|) hit the ego vehicle
# nuscenes-devkit, nuscenes/eval/detection/utils.py: category_to_detection_name. Pedestrians exclude
# personal_mobility, stroller and wheelchair; animals, debris, pushable_pullable, bicycle_rack,
# emergency vehicles and static objects have no detection class.
DETECTION_MAPPING = {
    "movable_object.barrier": "barrier",
    "vehicle.bicycle": "bicycle",
    "vehicle.bus.bendy": "bus",
    "vehicle.bus.rigid": "bus",
    "vehicle.car": "car",
    "vehicle.construction": "construction_vehicle",
    "vehicle.motorcycle": "motorcycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
    "vehicle.trailer": "trailer",
    "vehicle.truck": "truck",
}
# nuscenes-devkit, nuscenes/utils/splits.py
MINI_SPLITS = {
    "train": ["scene-0061", "scene-0553", "scene-0655", "scene-0757", "scene-0796", "scene-1077", "scene-1094",
              "scene-1100"],
    "val": ["scene-0103", "scene-0916"],
}
# a BEV grid for nuScenes (UniDistill's and CenterPoint's x/y extent, 0.6 m cells: 180 x 180)
NUSCENES_GRID = {"point_cloud_range": [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0], "cell_size": 0.6}


# -- geometry ---------------------------------------------------------------------------------------
def quaternion_matrix(q: Sequence[float]) -> np.ndarray:
    """3x3 rotation of a quaternion [w, x, y, z] (normalised first, as pyquaternion)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def pose_matrix(record: Mapping) -> np.ndarray:
    """4x4 child -> parent transform of a calibrated_sensor (sensor -> ego) or ego_pose (ego -> global) record."""
    out = np.eye(4)
    out[:3, :3] = quaternion_matrix(record["rotation"])
    out[:3, 3] = record["translation"]
    return out


def yaw_of(rotation: np.ndarray) -> float:
    """Heading of a rotation's x axis, counter-clockwise from +x (pyquaternion's yaw_pitch_roll[0])."""
    return math.atan2(rotation[1, 0], rotation[0, 0])


# -- the tables ---------------------------------------------------------------------------------------
class NuScenesTables:
    """The metadata tables of ``root/version`` indexed by token, plus the look-ups conversion needs."""

    def __init__(self, root: str | Path, version: str) -> None:
        self.root = Path(root).expanduser()
        self.version = version
        self.folder = self.root / version
        if not self.root.is_dir():
            raise DatasetFormatError(self.root, "root", "directory does not exist; expected a nuScenes root holding "
                                     f"{version}/, samples/ and sweeps/")
        if not self.folder.is_dir():
            have = sorted(p.name for p in self.root.glob("v1.0-*"))
            raise DatasetFormatError(self.folder, "version", f"metadata folder missing; the root has {have or 'none'} "
                                     "(pass --version)")
        self.tables = {name: self._load(name) for name in TABLES}
        self.channel = {token: self._get("sensor", cs["sensor_token"], f"calibrated_sensor[{token}].sensor_token")
                        ["channel"] for token, cs in self.tables["calibrated_sensor"].items()}
        self.keyframes: dict[str, dict[str, dict]] = {}  # sample token -> channel -> sample_data
        for sd in self.tables["sample_data"].values():
            if sd.get("is_key_frame"):
                channel = self.channel.get(sd["calibrated_sensor_token"])
                self.keyframes.setdefault(sd["sample_token"], {})[channel] = sd
        self.annotations: dict[str, list[dict]] = {}
        for ann in self.tables["sample_annotation"].values():
            self.annotations.setdefault(ann["sample_token"], []).append(ann)
        self.scene_by_name = {scene["name"]: scene for scene in self.tables["scene"].values()}

    def _load(self, name: str) -> dict[str, dict]:
        path = self.folder / f"{name}.json"
        if not path.is_file():
            raise DatasetFormatError(path, "table", f"missing; expected the nuScenes tables {list(TABLES)} in "
                                     f"{self.folder}")
        try:
            rows = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DatasetFormatError(path, "json", f"not valid JSON ({err})") from err
        if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("token"), str)
                                                 for r in rows):
            raise DatasetFormatError(path, "table", "expected a JSON list of records with a 'token'")
        return {r["token"]: r for r in rows}

    def _get(self, table: str, token: str, referrer: str) -> dict:
        record = self.tables[table].get(token)
        if record is None:
            raise DatasetFormatError(self.folder / f"{table}.json", referrer, f"token {token!r} not found in "
                                     f"{table}.json")
        return record

    def get(self, table: str, token: str, referrer: str = "") -> dict:
        return self._get(table, token, referrer or f"{table} token")

    def scene_samples(self, scene: dict) -> list[dict]:
        """The scene's samples in time order (first_sample_token, then next)."""
        samples, token = [], scene["first_sample_token"]
        while token:
            sample = self._get("sample", token, f"scene {scene['name']}")
            samples.append(sample)
            token = sample["next"]
            if len(samples) > len(self.tables["sample"]):
                raise DatasetFormatError(self.folder / "sample.json", "next", f"the samples of scene {scene['name']} "
                                         "form a cycle")
        return samples

    def keyframe(self, sample: dict, channel: str) -> dict:
        sd = self.keyframes.get(sample["token"], {}).get(channel)
        if sd is None:
            raise DatasetFormatError(self.folder / "sample_data.json", channel, f"no keyframe sample_data of "
                                     f"{channel} for sample {sample['token']}")
        return sd

    def sensor_to_global(self, sd: dict) -> np.ndarray:
        """4x4 sensor -> global of a sample_data: ego_pose @ calibrated_sensor."""
        cs = self._get("calibrated_sensor", sd["calibrated_sensor_token"], f"sample_data[{sd['token']}]")
        ep = self._get("ego_pose", sd["ego_pose_token"], f"sample_data[{sd['token']}]")
        return pose_matrix(ep) @ pose_matrix(cs)

    def category(self, ann: dict) -> str:
        instance = self._get("instance", ann["instance_token"], f"sample_annotation[{ann['token']}]")
        return self._get("category", instance["category_token"], f"instance[{instance['token']}]")["name"]

    def attribute(self, ann: dict) -> str:
        tokens = ann.get("attribute_tokens") or []
        if len(tokens) > 1:  # the devkit's GT loader refuses these too
            raise DatasetFormatError(self.folder / "sample_annotation.json", f"{ann['token']}.attribute_tokens",
                                     f"{len(tokens)} attributes; a detection annotation has at most one")
        return self._get("attribute", tokens[0], f"sample_annotation[{ann['token']}]")["name"] if tokens else ""

    def box_velocity(self, ann: dict) -> np.ndarray:
        """Global velocity (3,) in m/s as the devkit's NuScenes.box_velocity; NaN when not estimable."""
        has_prev, has_next = bool(ann["prev"]), bool(ann["next"])
        if not has_prev and not has_next:
            return np.full(3, np.nan)
        first = self._get("sample_annotation", ann["prev"], f"{ann['token']}.prev") if has_prev else ann
        last = self._get("sample_annotation", ann["next"], f"{ann['token']}.next") if has_next else ann
        time_first = 1e-6 * self._get("sample", first["sample_token"], first["token"])["timestamp"]
        time_last = 1e-6 * self._get("sample", last["sample_token"], last["token"])["timestamp"]
        time_diff = time_last - time_first
        if time_diff > MAX_TIME_DIFF * (2 if has_prev and has_next else 1) or time_diff <= 0:
            return np.full(3, np.nan)
        return (np.asarray(last["translation"], dtype=np.float64) - first["translation"]) / time_diff


# -- splits -----------------------------------------------------------------------------------------
def read_split_file(path: str | Path) -> dict[str, list[str]]:
    """``{split: [scene names]}`` from a JSON file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetFormatError(path, "split file", "not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DatasetFormatError(path, "json", f"not valid JSON ({err})") from err
    if not isinstance(data, dict) or not data:
        raise DatasetFormatError(path, "splits", "expected an object {split name: [scene names]}")
    for split, names in data.items():
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise DatasetFormatError(path, split, "expected a non-empty list of scene names")
    return {str(k): list(v) for k, v in data.items()}


def read_val_scenes(path: str | Path) -> list[str]:
    """Scene names, one a line (blank lines and ``#`` comments skipped), or a JSON list."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetFormatError(path, "val scenes", "not found")
    text = path.read_text()
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as err:
            raise DatasetFormatError(path, "json", f"not valid JSON ({err})") from err
    else:
        names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        names = [n for n in names if n]
    if not names or not all(isinstance(n, str) for n in names):
        raise DatasetFormatError(path, "val scenes", "expected scene names (e.g. scene-0003), one a line")
    return names


def scene_splits(tables: NuScenesTables, split_file: str | Path | None = None,
                 val_scenes: str | Path | None = None) -> tuple[dict[str, list[str]], str]:
    """Split name -> scene names of this root, and a description of where the split came from."""
    known = tables.scene_by_name
    if split_file is not None or val_scenes is not None:
        path = Path(split_file if split_file is not None else val_scenes)
        if split_file is not None:
            splits = read_split_file(path)
        else:
            val = read_val_scenes(path)
            val_set = set(val)
            splits = {"train": [n for n in known if n not in val_set], "val": val}
        owner: dict[str, str] = {}
        for split, names in splits.items():
            for name in names:
                if name not in known:
                    raise DatasetFormatError(path, split, f"scene {name!r} is not in {tables.version}/scene.json "
                                             f"({len(known)} scenes)")
                if name in owner:
                    raise DatasetFormatError(path, split, f"scene {name!r} is also in split {owner[name]!r}; "
                                             "splits must not overlap")
                owner[name] = split
        return splits, f"{path.name} (sha256 {sha256_of(path)})"
    if tables.version.endswith("mini"):
        # the official lists; a trimmed mini root may hold only some of the scenes
        splits = {split: [n for n in names if n in known] for split, names in MINI_SPLITS.items()}
        return {k: v for k, v in splits.items() if v}, "nuscenes-devkit splits.py mini_train/mini_val"
    raise DatasetFormatError(tables.folder, "splits", f"{tables.version} has no built-in split: pass --split-file "
                             "(JSON {split: [scene names]}) or --val-scenes (scene names, one a line); the official "
                             "lists are train and val in nuscenes-devkit's nuscenes/utils/splits.py")


# -- conversion --------------------------------------------------------------------------------------
def points_problem(path: Path) -> str | None:
    """Why a .pcd.bin cannot be a point file (empty, or cut inside a point), from its size alone."""
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes); expected float32 x 5 per point"
    if size % (4 * RAW_POINT_DIMS):
        return (f"size {size} bytes is not a multiple of {4 * RAW_POINT_DIMS} (float32 x 5: x, y, z, intensity, "
                "ring); truncated?")
    return None


def unreadable(path: Path) -> tuple[str, str] | None:
    """(field, problem) of a sample's file that is cut short or empty, or None. Cheap: the size of a point
    file, the header and tail of an image (images are linked, not decoded)."""
    if path.name.endswith(".bin"):
        problem = points_problem(path)
        return ("points", problem) if problem else None
    problem = truncation(path)
    return ("image", problem) if problem else None


def read_points(path: Path) -> np.ndarray:
    """A .pcd.bin as (N, 5) float32: x, y, z, intensity, ring."""
    if not path.is_file():
        raise DatasetFormatError(path, "lidar", "point file missing")
    problem = points_problem(path)
    if problem:
        raise DatasetFormatError(path, "points", problem)
    return np.fromfile(path, dtype="<f4").reshape(-1, RAW_POINT_DIMS)


def sweep_records(tables: NuScenesTables, lidar_sd: dict, sweeps: int) -> list[dict]:
    """The ``sweeps`` LIDAR_TOP sample_data before the keyframe (following ``prev``; fewer at a log's start)."""
    records, sd = [], lidar_sd
    while len(records) < sweeps and sd["prev"]:
        sd = tables.get("sample_data", sd["prev"], f"sample_data[{sd['token']}].prev")
        records.append(sd)
    return records


def sample_points(tables: NuScenesTables, lidar_sd: dict, global_to_lidar: np.ndarray, sweeps: int) -> np.ndarray:
    """(N, 5) float32 x, y, z, intensity, time lag: the keyframe, then its sweeps in the keyframe's frame."""
    key = read_points(tables.root / lidar_sd["filename"])
    parts = [np.concatenate([key[:, :4], np.zeros((len(key), 1), dtype=np.float32)], axis=1)]
    for sd in sweep_records(tables, lidar_sd, sweeps):
        points = read_points(tables.root / sd["filename"])
        points = points[~((np.abs(points[:, 0]) < CLOSE_RADIUS) & (np.abs(points[:, 1]) < CLOSE_RADIUS))]
        transform = global_to_lidar @ tables.sensor_to_global(sd)
        xyz = points[:, :3].astype(np.float64) @ transform[:3, :3].T + transform[:3, 3]
        lag = np.full((len(points), 1), 1e-6 * (lidar_sd["timestamp"] - sd["timestamp"]))
        parts.append(np.concatenate([xyz, points[:, 3:4], lag], axis=1).astype(np.float32))
    return np.concatenate(parts, axis=0).astype(np.float32)


def sample_boxes(tables: NuScenesTables, sample: dict, global_to_lidar: np.ndarray) -> dict:
    """The sample's annotations of the detection classes in the LiDAR frame, with their per-box keys."""
    rotation = global_to_lidar[:3, :3]
    boxes, labels, num_points, num_radar, attributes, missing = [], [], [], [], [], []
    for ann in tables.annotations.get(sample["token"], []):
        label = DETECTION_MAPPING.get(tables.category(ann))
        if label is None:
            continue
        centre = global_to_lidar @ np.append(np.asarray(ann["translation"], dtype=np.float64), 1.0)
        yaw = yaw_of(rotation @ quaternion_matrix(ann["rotation"]))
        width, length, height = ann["size"]
        velocity = tables.box_velocity(ann)
        if not np.isfinite(velocity[:2]).all():
            missing.append(len(boxes))
            velocity = np.zeros(3)
        velocity = rotation @ np.array([velocity[0], velocity[1], 0.0])
        boxes.append([*centre[:3], length, width, height, yaw, velocity[0], velocity[1]])
        labels.append(label)
        num_points.append(int(ann.get("num_lidar_pts", 0)))
        num_radar.append(int(ann.get("num_radar_pts", 0)))
        attributes.append(tables.attribute(ann))
    out = {"boxes": np.asarray(boxes, dtype=np.float64).reshape(-1, 9), "labels": labels, "num_points": num_points,
           "num_radar_points": num_radar, "attributes": attributes}
    if missing:
        out["velocity_missing"] = missing
    return out


def convert_sample(tables: NuScenesTables, sample: dict, scene: dict, cameras: Sequence[str], sweeps: int) -> dict:
    """One keyframe sample as a ``write_detection_dataset`` input."""
    lidar_sd = tables.keyframe(sample, LIDAR)
    lidar2ego = pose_matrix(tables.get("calibrated_sensor", lidar_sd["calibrated_sensor_token"]))
    ego_pose = tables.get("ego_pose", lidar_sd["ego_pose_token"])
    ego2global = pose_matrix(ego_pose)
    lidar2global = ego2global @ lidar2ego
    global_to_lidar = np.linalg.inv(lidar2global)
    cams = {}
    for cam in cameras:
        sd = tables.keyframe(sample, cam)
        cs = tables.get("calibrated_sensor", sd["calibrated_sensor_token"])
        intrinsics = np.asarray(cs.get("camera_intrinsic") or [], dtype=np.float64)
        if intrinsics.shape != (3, 3):
            raise DatasetFormatError(tables.folder / "calibrated_sensor.json", f"{cs['token']}.camera_intrinsic",
                                     f"got {intrinsics.tolist()}; expected a 3x3 matrix for {cam}")
        cams[cam] = {"image": tables.root / sd["filename"], "intrinsics": intrinsics,
                     "lidar2cam": np.linalg.inv(tables.sensor_to_global(sd)) @ lidar2global}
    return {"token": sample["token"], "points": sample_points(tables, lidar_sd, global_to_lidar, sweeps),
            "cams": cams, **sample_boxes(tables, sample, global_to_lidar),
            "ego_translation": list(map(float, ego_pose["translation"])), "lidar2ego": lidar2ego,
            "ego2global": ego2global, "scene": scene["name"], "timestamp": int(sample["timestamp"])}


def sample_files(tables: NuScenesTables, sample: dict, cameras: Sequence[str], sweeps: int) -> list[Path]:
    """The files a sample needs: keyframe points, sweeps, camera images."""
    lidar_sd = tables.keyframe(sample, LIDAR)
    records = [lidar_sd, *sweep_records(tables, lidar_sd, sweeps), *(tables.keyframe(sample, c) for c in cameras)]
    return [tables.root / sd["filename"] for sd in records]


def convert(root: str | Path, out: str | Path, version: str = "v1.0-mini", cameras: Sequence[str] = CAMERAS,
            split_file: str | Path | None = None, val_scenes: str | Path | None = None, sweeps: int = 0,
            skip_missing_files: bool = False, link: bool = True, force: bool = False,
            skip_bad: bool = False) -> tuple[Path, dict]:
    """A nuScenes root -> a detection dataset at ``out``; returns it and a summary. A sample with a missing
    file stops the conversion unless ``skip_missing_files``; one with a truncated or empty point file or
    image unless ``skip_bad``. Skipped samples are listed in meta.json ``skipped``."""
    from xmodal.data.detection import write_detection_dataset

    out = refuse_existing(out, force)  # before reading ~1 GB of tables
    unknown = [c for c in cameras if c not in CAMERAS]
    if unknown or len(set(cameras)) != len(cameras):
        raise ValueError(f"cameras {list(cameras)}: expected distinct names from {list(CAMERAS)}")
    if sweeps < 0:
        raise ValueError(f"sweeps must be >= 0, got {sweeps}")
    tables = NuScenesTables(root, version)
    splits, split_source = scene_splits(tables, split_file, val_scenes)
    # the sample list and every file it needs are known before anything is written
    plan, split_ids, skipped, scenes = [], {}, [], {}
    sources = SkippedSources(skip_bad, tables.root)
    for split, names in splits.items():
        for name in names:
            scene = tables.scene_by_name[name]
            log = tables.get("log", scene["log_token"], f"scene[{name}].log_token")
            kept = 0
            for sample in tables.scene_samples(scene):
                files = sample_files(tables, sample, cameras, sweeps)
                missing = [p for p in files if not p.is_file()]
                if missing:
                    if not skip_missing_files:
                        raise DatasetFormatError(missing[0], "file", f"missing (sample {sample['token']}, scene "
                                                 f"{name}); {len(missing)} of this sample's files are missing; is "
                                                 "the root complete? (--skip-missing-files leaves such samples out)")
                    sources.add(missing[0], f"file: missing ({len(missing)} of the sample's files)", sample["token"])
                    skipped.append(sample["token"])
                    continue
                bad = next(((p, *found) for p in files if (found := unreadable(p))), None)
                if bad:
                    path, field, problem = bad
                    sources.handle(DatasetFormatError(path, field, f"{problem} (sample {sample['token']}, scene "
                                                      f"{name})"), sample["token"])
                    skipped.append(sample["token"])
                    continue
                split_ids.setdefault(split, []).append(len(plan))
                plan.append((sample, scene))
                kept += 1
            scenes[name] = {"split": split, "location": log.get("location", ""), "samples": kept}
    if not plan:
        raise DatasetFormatError(tables.root, "samples", "no sample to convert (every sample skipped)")
    stats = {"velocity_missing_boxes": 0, "boxes": 0}

    def samples() -> Iterator[dict]:
        for sample, scene in plan:
            try:
                record = convert_sample(tables, sample, scene, cameras, sweeps)
            except (KeyError, TypeError, ValueError) as err:  # a record without a field the schema requires
                if isinstance(err, DatasetFormatError):
                    raise
                raise DatasetFormatError(tables.folder, f"sample {sample['token']} (scene {scene['name']})",
                                         f"a record it refers to is malformed: {type(err).__name__}: {err}") from err
            stats["velocity_missing_boxes"] += len(record.get("velocity_missing", []))
            stats["boxes"] += len(record["boxes"])
            yield record

    # ``stats`` is filled while the samples are written; write_detection_dataset reads extra_meta after the last one
    meta = {
        "grid": NUSCENES_GRID,
        "nuscenes": {
            "version": version, "root": str(tables.root), "cameras": list(cameras), "sweeps": sweeps,
            "split_source": split_source, "scenes": scenes, "skipped_samples": skipped,
            "category_mapping": DETECTION_MAPPING,
            "points": "x, y, z (LiDAR frame), intensity (0-255), time lag (s; 0 for the keyframe)",
            "velocity": "box_velocity (prev/next centres over their time difference, <= 1.5 s, 3 s central), "
                        "rotated into the LiDAR frame; 0 where not estimable (listed in velocity_missing)",
            "stats": stats,
        },
        # the metadata tables define the samples and boxes; points and images are the data they point at
        **sources.meta(),
        **provenance([tables.folder / f"{name}.json" for name in TABLES] + [split_file, val_scenes], root=tables.root),
    }
    path = write_detection_dataset(out, samples(), split_ids, DETECTION_NAMES, name=f"nuscenes-{version}",
                                   source=f"nuScenes {version} at {tables.root}", cameras=list(cameras), force=force,
                                   extra_meta=meta, link=link)
    summary = {"samples": len(plan), "skipped": len(skipped), "boxes": stats["boxes"],
               "velocity_missing": stats["velocity_missing_boxes"],
               "splits": {k: len(v) for k, v in split_ids.items()}}
    return path, summary


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="nuScenes root (holding v1.0-*/, samples/, sweeps/)")
    parser.add_argument("--version", default="v1.0-mini", help="metadata folder: v1.0-mini (default) or "
                        "v1.0-trainval")
    parser.add_argument("--out", required=True, help="output dataset directory (xmodal detection format)")
    parser.add_argument("--cameras", nargs="+", choices=CAMERAS, default=list(CAMERAS),
                        help="cameras to keep, in this order (default all six)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--split-file", help="JSON {split: [scene names]} (needed for v1.0-trainval unless "
                       "--val-scenes)")
    group.add_argument("--val-scenes", help="text file of val scene names, one a line; every other scene is train")
    parser.add_argument("--sweeps", type=int, default=0, help="previous LIDAR_TOP sweeps to add to each keyframe, "
                        "with their time lag (default 0; CenterPoint and UniDistill use 9, i.e. 10 sweeps)")
    parser.add_argument("--skip-missing-files", action="store_true", help="leave out samples whose point, sweep "
                        "or image files are missing (a partial download) instead of stopping")
    add_skip_bad_argument(parser)
    parser.add_argument("--copy", action="store_true", help="copy image files instead of hard-linking them")
    parser.add_argument("--force", action="store_true", help="replace an existing dataset at --out")
    args = parser.parse_args(argv)
    if args.sweeps < 0:
        parser.error("--sweeps must be >= 0")
    try:
        out, summary = convert(args.root, args.out, args.version, list(dict.fromkeys(args.cameras)), args.split_file,
                               args.val_scenes, args.sweeps, args.skip_missing_files, link=not args.copy,
                               force=args.force, skip_bad=args.skip_bad)
    except (ValueError, DatasetExistsError) as err:  # DatasetFormatError, or the writer refusing a sample
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {summary['samples']} samples ({summary['skipped']} skipped), {summary['boxes']} boxes "
          f"({summary['velocity_missing']} without a velocity estimate, stored as 0), splits {summary['splits']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
