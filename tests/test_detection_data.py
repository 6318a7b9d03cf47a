"""3-D detection data: data_prep/nuscenes.py on a tiny root in the real table layout (boxes checked by
hand), the synthetic-scenes builder, DetectionDataset's checks, detection_collate and the writer."""

import io
import json
import math

import numpy as np
import pytest
import torch
from mmengine.registry import FUNCTIONS
from PIL import Image
from torch.utils.data import DataLoader

from data_prep import nuscenes
from xmodal.data.detection import (
    DetectionDataset,
    detection_collate,
    points_in_boxes,
    resize_intrinsics,
    write_detection_dataset,
)
from xmodal.data.synthetic_scenes import (
    CLASS_COLOURS,
    SyntheticScenesDataset,
    SyntheticScenesSpec,
    build_synthetic_scenes,
    make_scene,
)
from xmodal.data.writer import DatasetExistsError
from xmodal.errors import DatasetFormatError
from xmodal.registry import DATASETS

S2 = math.sqrt(0.5)
YAW_90 = [S2, 0.0, 0.0, S2]  # [w, x, y, z]: +90° about z
LIDAR_ROT = [S2, 0.0, 0.0, -S2]  # -90° about z: the LiDAR's x axis points to the ego's right, as on nuScenes
CAM_FRONT_ROT = [0.5, -0.5, 0.5, -0.5]  # camera x -> ego -y, y -> ego -z, z (optical axis) -> ego +x
CAM_BACK_ROT = [0.5, -0.5, -0.5, 0.5]  # camera z -> ego -x
K = [[1000.0, 0.0, 800.0], [0.0, 1000.0, 450.0], [0.0, 0.0, 1.0]]


# -- a tiny nuScenes root ------------------------------------------------------------------------------
def _jpg(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 8), colour).save(path, format="JPEG")


def _bin(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.asarray(rows, dtype=np.float32).tofile(path)


@pytest.fixture
def nusc_root(tmp_path):
    return make_nusc_root(tmp_path)


def make_nusc_root(tmp_path):
    """Two scenes of three keyframes each (v1.0-mini names), LIDAR_TOP + CAM_FRONT + CAM_BACK.

    Scene A (scene-0061, mini train): samples 0.5 s apart, the LiDAR's ego pose at (100, 200 + k, 0)
    heading +90° (global +y), each camera's ego pose 1 m further along +y. A car drives along +y at
    4 m/s (centre (100, 210 + 2k, 1)), a pedestrian is annotated once (no velocity), a dog has no
    detection class. One LIDAR_TOP sweep lies between keyframes 0 and 1.
    Scene B (scene-0103, mini val): identity ego pose, samples 2 s apart; a barrier at (5, 0, 0) and
    a car annotated in two samples 2 s apart (too far apart for a velocity).
    """
    root = tmp_path / "nuscenes"
    tables = {name: [] for name in nuscenes.TABLES}
    tables["sensor"] = [{"token": "s-lidar", "channel": "LIDAR_TOP", "modality": "lidar"},
                        {"token": "s-cf", "channel": "CAM_FRONT", "modality": "camera"},
                        {"token": "s-cb", "channel": "CAM_BACK", "modality": "camera"}]
    tables["calibrated_sensor"] = [
        {"token": "cs-lidar", "sensor_token": "s-lidar", "translation": [1.0, 0.0, 2.0], "rotation": LIDAR_ROT,
         "camera_intrinsic": []},
        {"token": "cs-cf", "sensor_token": "s-cf", "translation": [1.5, 0.0, 1.5], "rotation": CAM_FRONT_ROT,
         "camera_intrinsic": K},
        {"token": "cs-cb", "sensor_token": "s-cb", "translation": [-1.0, 0.0, 1.5], "rotation": CAM_BACK_ROT,
         "camera_intrinsic": K},
    ]
    tables["log"] = [{"token": "log0", "logfile": "n008", "vehicle": "n008", "date_captured": "2018-08-01",
                      "location": "singapore-onenorth"}]
    tables["category"] = [{"token": f"cat-{n}", "name": n, "description": ""} for n in
                          ("vehicle.car", "human.pedestrian.adult", "animal", "movable_object.barrier")]
    tables["attribute"] = [{"token": "at-stand", "name": "pedestrian.standing", "description": ""},
                           {"token": "at-moving", "name": "vehicle.moving", "description": ""}]
    scenes = {"A": ("scene-0061", 100.0, 0.5), "B": ("scene-0103", 300.0, 2.0)}
    for key, (name, start, step) in scenes.items():
        tokens = [f"{key.lower()}{k}" for k in range(3)]
        tables["scene"].append({"token": f"scene{key}", "log_token": "log0", "nbr_samples": 3, "name": name,
                                "description": "", "first_sample_token": tokens[0], "last_sample_token": tokens[2]})
        for k, token in enumerate(tokens):
            t = int((start + step * k) * 1e6)
            tables["sample"].append({"token": token, "timestamp": t, "scene_token": f"scene{key}",
                                     "prev": tokens[k - 1] if k else "", "next": tokens[k + 1] if k < 2 else ""})
            for channel, cs, dy in (("LIDAR_TOP", "cs-lidar", 0.0), ("CAM_FRONT", "cs-cf", 1.0),
                                    ("CAM_BACK", "cs-cb", 1.0)):
                ego = ([100.0, 200.0 + k + dy, 0.0], YAW_90) if key == "A" else ([0.0, 0.0, 0.0], [1.0, 0, 0, 0])
                ep = f"ep-{token}-{channel}"
                tables["ego_pose"].append({"token": ep, "timestamp": t, "translation": ego[0], "rotation": ego[1]})
                folder = f"samples/{channel}"
                file = f"{folder}/{token}_{channel}." + ("pcd.bin" if channel == "LIDAR_TOP" else "jpg")
                tables["sample_data"].append({
                    "token": f"sd-{token}-{channel}", "sample_token": token, "ego_pose_token": ep,
                    "calibrated_sensor_token": cs, "timestamp": t, "fileformat": "pcd" if "LIDAR" in channel else "jpg",
                    "is_key_frame": True, "height": 0 if "LIDAR" in channel else 8,
                    "width": 0 if "LIDAR" in channel else 16, "filename": file, "prev": "", "next": ""})
                if channel == "LIDAR_TOP":  # x, y, z, intensity, ring: 2 points per file, x = sample number
                    _bin(root / file, [[10.0 + k, 1.0, -1.0, 50.0, 7.0], [20.0 + k, -2.0, 0.5, 3.0, 31.0]])
                else:
                    _jpg(root / file, (40 * k, 100, 200))
    # LIDAR_TOP chain of scene A: a0 <- sweep <- a1 <- a2
    sd = {r["token"]: r for r in tables["sample_data"]}
    sd["sd-a1-LIDAR_TOP"]["prev"], sd["sd-a2-LIDAR_TOP"]["prev"] = "sd-sweep", "sd-a1-LIDAR_TOP"
    tables["ego_pose"].append({"token": "ep-sweep", "timestamp": int(100.25e6), "translation": [100.0, 200.5, 0.0],
                               "rotation": YAW_90})
    tables["sample_data"].append({
        "token": "sd-sweep", "sample_token": "a1", "ego_pose_token": "ep-sweep", "calibrated_sensor_token": "cs-lidar",
        "timestamp": int(100.25e6), "fileformat": "pcd", "is_key_frame": False, "height": 0, "width": 0,
        "filename": "sweeps/LIDAR_TOP/sweep.pcd.bin", "prev": "sd-a0-LIDAR_TOP", "next": "sd-a1-LIDAR_TOP"})
    _bin(root / "sweeps/LIDAR_TOP/sweep.pcd.bin", [[0.0, 5.0, 0.0, 9.0, 1.0], [0.5, 0.3, 0.0, 9.0, 2.0]])

    def annotate(token, sample, instance, xyz, size, rotation, prev="", next_="", attributes=(), pts=5):
        tables["sample_annotation"].append({
            "token": token, "sample_token": sample, "instance_token": instance, "visibility_token": "4",
            "attribute_tokens": list(attributes), "translation": xyz, "size": size, "rotation": rotation,
            "num_lidar_pts": pts, "num_radar_pts": 1, "prev": prev, "next": next_})

    for k in range(3):
        annotate(f"car{k}", f"a{k}", "i-car", [100.0, 210.0 + 2 * k, 1.0], [2.0, 4.0, 1.5], YAW_90,
                 prev=f"car{k - 1}" if k else "", next_=f"car{k + 1}" if k < 2 else "", attributes=["at-moving"],
                 pts=10 + k)
    annotate("ped0", "a0", "i-ped", [103.0, 205.0, 0.9], [0.6, 0.7, 1.8], [1.0, 0, 0, 0], attributes=["at-stand"])
    annotate("dog0", "a1", "i-dog", [101.0, 204.0, 0.3], [0.3, 0.8, 0.5], [1.0, 0, 0, 0])
    annotate("bar0", "b0", "i-bar", [5.0, 0.0, 0.0], [0.5, 2.0, 1.0], [1.0, 0, 0, 0], pts=0)
    annotate("bcar0", "b0", "i-bcar", [0.0, 10.0, 0.8], [1.8, 4.2, 1.6], YAW_90, next_="bcar1")
    annotate("bcar1", "b1", "i-bcar", [0.0, 12.0, 0.8], [1.8, 4.2, 1.6], YAW_90, prev="bcar0")
    tables["instance"] = [{"token": i, "category_token": c, "nbr_annotations": 1, "first_annotation_token": "",
                           "last_annotation_token": ""} for i, c in
                          (("i-car", "cat-vehicle.car"), ("i-ped", "cat-human.pedestrian.adult"),
                           ("i-dog", "cat-animal"), ("i-bar", "cat-movable_object.barrier"),
                           ("i-bcar", "cat-vehicle.car"))]
    folder = root / "v1.0-mini"
    folder.mkdir(parents=True)
    for name, rows in tables.items():
        (folder / f"{name}.json").write_text(json.dumps(rows))
    return root


def _records(out):
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def test_quaternion_matrices_by_hand():
    np.testing.assert_allclose(nuscenes.quaternion_matrix(YAW_90), [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    np.testing.assert_allclose(nuscenes.quaternion_matrix(CAM_FRONT_ROT), [[0, 0, 1], [-1, 0, 0], [0, -1, 0]],
                               atol=1e-12)
    np.testing.assert_allclose(nuscenes.quaternion_matrix([2.0, 0, 0, 0]), np.eye(3))  # normalised first


def test_nuscenes_prep_boxes_calibration_and_points_by_hand(nusc_root, tmp_path, capsys):
    out = tmp_path / "nusc"
    assert nuscenes.main(["--root", str(nusc_root), "--out", str(out), "--cameras", "CAM_FRONT", "CAM_BACK"]) == 0
    assert "6 samples (0 skipped), 7 boxes (4 without a velocity estimate" in capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    assert meta["task"] == "detection" and meta["classes"][0] == "car" and len(meta["classes"]) == 10
    assert meta["cameras"] == ["CAM_FRONT", "CAM_BACK"] and meta["point_dims"] == 5
    assert meta["counts"] == {"sample": 6, "box": 7}
    assert meta["nuscenes"]["stats"] == {"velocity_missing_boxes": 4, "boxes": 7}
    assert meta["nuscenes"]["scenes"]["scene-0103"] == {"split": "val", "location": "singapore-onenorth",
                                                        "samples": 3}
    assert json.loads((out / "splits.json").read_text()) == {"train": [0, 1, 2], "val": [3, 4, 5]}
    rows = _records(out)
    assert [r["token"] for r in rows] == ["a0", "a1", "a2", "b0", "b1", "b2"]

    # sample a1: ego at (100, 201) heading +y; the car at (100, 212, 1) is 11 m ahead of the ego, 10 m ahead
    # of the LiDAR (1 m forward, 2 m up), i.e. on the LiDAR's +y axis; it heads along the ego's +x (LiDAR yaw
    # +90°) at 4 m/s: central difference (214 - 210) / 1 s along global +y = LiDAR +y
    a1 = rows[1]
    assert a1["labels"] == ["car"] and a1["num_points"] == [11] and a1["attributes"] == ["vehicle.moving"]
    np.testing.assert_allclose(a1["boxes"][0], [0, 10, -1, 4, 2, 1.5, math.pi / 2, 0, 4], atol=1e-5)
    assert "velocity_missing" not in a1 and a1["ego_translation"] == [100.0, 201.0, 0.0]
    # a0: one-sided difference (212 - 210) / 0.5 s; the pedestrian has no neighbour: velocity 0, listed
    a0 = rows[0]
    assert sorted(a0["labels"]) == ["car", "pedestrian"]  # the dog has no detection class
    ped = a0["labels"].index("pedestrian")
    assert a0["velocity_missing"] == [ped] and a0["attributes"][ped] == "pedestrian.standing"
    # pedestrian: global (103, 205, 0.9) -> ego (5, -3, 0.9) -> LiDAR (3, 4, -1.1); it heads along global +x,
    # the ego's right, the LiDAR's +x (yaw 0); size [w, l, h] -> dx = l
    np.testing.assert_allclose(a0["boxes"][ped], [3, 4, -1.1, 0.7, 0.6, 1.8, 0, 0, 0], atol=1e-5)
    np.testing.assert_allclose(a0["boxes"][1 - ped][7:], [0, 4], atol=1e-5)
    # scene B, identity ego: the barrier at (5, 0, 0) -> LiDAR (0, 4, -2); the car's neighbour is 2 s away
    # (> 1.5 s: no estimate)
    b0 = rows[3]
    bar, car = b0["labels"].index("barrier"), b0["labels"].index("car")
    np.testing.assert_allclose(b0["boxes"][bar], [0, 4, -2, 2, 0.5, 1, math.pi / 2, 0, 0], atol=1e-5)
    assert b0["num_points"][bar] == 0 and b0["num_radar_points"] == [1, 1]
    assert b0["velocity_missing"] == sorted([bar, car])  # the barrier has no neighbour at all
    np.testing.assert_allclose(b0["lidar2ego"], [[0, 1, 0, 1], [-1, 0, 0, 0], [0, 0, 1, 2], [0, 0, 0, 1]],
                               atol=1e-12)

    ds = DetectionDataset(out, "train", with_info=True)
    item = ds[1]
    # lidar2cam: the car's centre seen by CAM_FRONT, whose ego pose is 1 m further: 10 m ahead of that ego,
    # 8.5 m ahead of the camera (1.5 m forward), 0.5 m below it (1.5 m up): camera (0, 0.5, 8.5); CAM_BACK
    # (1 m behind the ego centre, looking backwards, its x axis to the ego's left) has it 11 m behind
    cam_front = item["lidar2cam"][0].double() @ torch.tensor([0.0, 10.0, -1.0, 1.0], dtype=torch.float64)
    np.testing.assert_allclose(cam_front.numpy(), [0, 0.5, 8.5, 1], atol=1e-5)
    cam_back = item["lidar2cam"][1].double() @ torch.tensor([0.0, 10.0, -1.0, 1.0], dtype=torch.float64)
    np.testing.assert_allclose(cam_back.numpy(), [0, 0.5, -11.0, 1], atol=1e-5)
    np.testing.assert_allclose(item["intrinsics"][0].numpy(), K)
    assert item["images"].shape == (2, 3, 8, 16)
    # points: x, y, z, intensity kept, the ring index replaced by the time lag 0
    np.testing.assert_allclose(item["points"].numpy(), [[11, 1, -1, 50, 0], [21, -2, 0.5, 3, 0]])
    assert item["sample_token"] == "a1" and int(item["index"]) == 1 and item["info"]["scene"] == "scene-0061"
    assert item["gt_labels"].tolist() == [0]
    image = out / rows[1]["cams"]["CAM_FRONT"]["file"]
    assert image.stat().st_ino == (nusc_root / "samples/CAM_FRONT/a1_CAM_FRONT.jpg").stat().st_ino  # hard link


def test_nuscenes_sweeps_move_into_the_keyframe_frame(nusc_root, tmp_path):
    out = tmp_path / "sweeps"
    assert nuscenes.main(["--root", str(nusc_root), "--out", str(out), "--cameras", "CAM_FRONT",
                          "--sweeps", "2"]) == 0
    points = DetectionDataset(out, "train", load_images=False)[1]["points"].numpy()
    # keyframe a1 first; then the sweep (0.25 s earlier, ego 0.5 m back along +y): its point (0, 5, 0) is
    # 5.5 m ahead of the a1 ego, 4.5 m ahead of the LiDAR -> (0, 4.5, 0); its point within 1 m of the
    # sensor is dropped; then keyframe a0 (0.5 s earlier, ego 1 m back): (10, 1, -1) -> (10, 0, -1)
    expected = [[11, 1, -1, 50, 0], [21, -2, 0.5, 3, 0], [0, 4.5, 0, 9, 0.25], [10, 0, -1, 50, 0.5],
                [20, -3, 0.5, 3, 0.5]]
    np.testing.assert_allclose(points, expected, atol=1e-5)
    assert len(DetectionDataset(out, "train", load_images=False)[0]["points"]) == 2  # a0 starts the chain


def test_nuscenes_splits_and_missing_files(nusc_root, tmp_path, capsys):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["scene-0103"], "test": ["scene-0061"]}))
    out = tmp_path / "a"
    assert nuscenes.main(["--root", str(nusc_root), "--out", str(out), "--split-file", str(split),
                          "--cameras", "CAM_FRONT"]) == 0
    assert json.loads((out / "splits.json").read_text()) == {"train": [0, 1, 2], "test": [3, 4, 5]}
    assert "split.json (sha256" in json.loads((out / "meta.json").read_text())["nuscenes"]["split_source"]

    val = tmp_path / "val.txt"
    val.write_text("# official val\nscene-0103\n\n")
    out = tmp_path / "b"
    assert nuscenes.main(["--root", str(nusc_root), "--out", str(out), "--val-scenes", str(val),
                          "--cameras", "CAM_BACK"]) == 0
    assert json.loads((out / "splits.json").read_text()) == {"train": [0, 1, 2], "val": [3, 4, 5]}

    split.write_text(json.dumps({"train": ["scene-0061", "scene-9999"]}))
    assert nuscenes.main(["--root", str(nusc_root), "--out", str(tmp_path / "c"), "--split-file", str(split)]) == 2
    assert "train: scene 'scene-9999' is not in v1.0-mini/scene.json (2 scenes)" in capsys.readouterr().err

    (nusc_root / "v1.0-mini").rename(nusc_root / "v1.0-trainval")
    assert nuscenes.main(["--root", str(nusc_root), "--version", "v1.0-trainval", "--out",
                          str(tmp_path / "d")]) == 2
    assert "v1.0-trainval has no built-in split: pass --split-file" in capsys.readouterr().err
    assert nuscenes.main(["--root", str(nusc_root), "--out", str(tmp_path / "d")]) == 2
    assert "v1.0-mini: version: metadata folder missing; the root has ['v1.0-trainval']" in capsys.readouterr().err
    (nusc_root / "v1.0-trainval").rename(nusc_root / "v1.0-mini")

    (nusc_root / "samples/CAM_FRONT/b1_CAM_FRONT.jpg").unlink()
    assert nuscenes.main(["--root", str(nusc_root), "--out", str(tmp_path / "e")]) == 2  # 6 cameras by default
    assert "CAM_FRONT_RIGHT: no keyframe sample_data of CAM_FRONT_RIGHT for sample a0" in capsys.readouterr().err
    assert nuscenes.main(["--root", str(nusc_root), "--out", str(tmp_path / "e"), "--cameras", "CAM_FRONT"]) == 2
    assert "b1_CAM_FRONT.jpg: file: missing (sample b1, scene scene-0103)" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
    assert nuscenes.main(["--root", str(nusc_root), "--out", str(tmp_path / "e"), "--cameras", "CAM_FRONT",
                          "--skip-missing-files"]) == 0
    meta = json.loads((tmp_path / "e" / "meta.json").read_text())
    assert meta["counts"]["sample"] == 5 and meta["nuscenes"]["skipped_samples"] == ["b1"]


def test_nuscenes_prep_refuses_to_overwrite_without_force(nusc_root, tmp_path, capsys):
    out = tmp_path / "nusc"
    args = ["--root", str(nusc_root), "--out", str(out), "--cameras", "CAM_FRONT"]
    assert nuscenes.main(args) == 0
    first = (out / "samples.jsonl").read_bytes()
    assert nuscenes.main(args) == 2
    assert "already exists and is not empty; pass --force" in capsys.readouterr().err
    assert nuscenes.main([*args, "--force"]) == 0
    assert (out / "samples.jsonl").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nusc", "nuscenes"]  # no temporary directory left


def test_nuscenes_truncated_files_are_named_and_skip_bad_leaves_their_samples_out(nusc_root, tmp_path, capsys):
    out = tmp_path / "nusc"
    args = ["--root", str(nusc_root), "--out", str(out), "--cameras", "CAM_FRONT", "--force"]
    assert nuscenes.main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    image = nusc_root / "samples/CAM_FRONT/a1_CAM_FRONT.jpg"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])  # cut short: linked, never decoded
    points = nusc_root / "samples/LIDAR_TOP/b2_LIDAR_TOP.pcd.bin"
    points.write_bytes(points.read_bytes()[:30])  # cut inside the second point
    capsys.readouterr()
    assert nuscenes.main(args) == 2
    err = capsys.readouterr().err
    assert "a1_CAM_FRONT.jpg: image: truncated: no JPEG end-of-image marker (FF D9) in the last " in err
    assert "(sample a1, scene scene-0061) (--skip-bad leaves such samples out)" in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # the earlier dataset stays

    assert nuscenes.main([*args, "--skip-bad"]) == 0
    assert "4 samples (2 skipped)" in capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    assert [(e["file"], e["sample"]) for e in meta["skipped"]] == [
        ("samples/CAM_FRONT/a1_CAM_FRONT.jpg", "a1"), ("samples/LIDAR_TOP/b2_LIDAR_TOP.pcd.bin", "b2")]
    assert meta["skipped"][1]["reason"].startswith("points: size 30 bytes is not a multiple of 20")
    assert meta["nuscenes"]["skipped_samples"] == ["a1", "b2"]
    assert [r["token"] for r in _records(out)] == ["a0", "a2", "b0", "b1"]
    assert json.loads((out / "splits.json").read_text()) == {"train": [0, 1], "val": [2, 3]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nusc", "nuscenes"]


def test_nuscenes_bad_records_are_named(nusc_root, tmp_path, capsys):
    args = ["--root", str(nusc_root), "--out", str(tmp_path / "out"), "--cameras", "CAM_FRONT"]
    _bin(nusc_root / "samples/LIDAR_TOP/a2_LIDAR_TOP.pcd.bin", [[np.nan, 0, 0, 1, 2]])
    assert nuscenes.main(args) == 2
    assert "nuscenes-v1.0-mini: sample 2 (token 'a2'): points: non-finite value nan at point 0, column 0 (x)" in \
        capsys.readouterr().err
    _bin(nusc_root / "samples/LIDAR_TOP/a2_LIDAR_TOP.pcd.bin", [[1, 0, 0, 1, 2, 3]])
    assert nuscenes.main(args) == 2
    assert "a2_LIDAR_TOP.pcd.bin: points: size 24 bytes is not a multiple of 20" in capsys.readouterr().err
    _bin(nusc_root / "samples/LIDAR_TOP/a2_LIDAR_TOP.pcd.bin", [[1, 0, 0, 1, 2]])
    table = nusc_root / "v1.0-mini/sample_annotation.json"
    rows = json.loads(table.read_text())
    del rows[0]["size"]
    table.write_text(json.dumps(rows))
    assert nuscenes.main(args) == 2
    assert "v1.0-mini: sample a0 (scene scene-0061): a record it refers to is malformed: KeyError: 'size'" in \
        capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nuscenes"]


# -- synthetic scenes ---------------------------------------------------------------------------------
SMALL = SyntheticScenesSpec(num_samples=8, split_fractions=(0.5, 0.25, 0.25))


def test_synthetic_scenes_builder(tmp_path):
    root = build_synthetic_scenes(SMALL, root=tmp_path)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["counts"]["sample"] == 8 and meta["classes"] == ["car", "pedestrian", "bicycle"]
    assert meta["grid"] == {"point_cloud_range": [0.0, -19.2, -3.0, 38.4, 19.2, 2.0], "cell_size": 0.6}
    splits = json.loads((root / "splits.json").read_text())
    assert {k: len(v) for k, v in splits.items()} == {"train": 4, "val": 2, "test": 2}
    built = (root / "meta.json").stat().st_mtime_ns
    assert build_synthetic_scenes(SMALL, root=tmp_path) == root and (root / "meta.json").stat().st_mtime_ns == built

    ds = DetectionDataset(root, "train", with_info=True)
    for position in range(len(ds)):
        item = ds[position]
        boxes, points = item["gt_boxes"].numpy().astype(np.float64), item["points"].numpy().astype(np.float64)
        assert 2 <= len(boxes) <= 8 and (points[:, 4] == 0).all() and len(points) > 1000
        # every point lies on a box surface or on the ground: not inside a box shrunk by 10 cm; outside the
        # boxes grown by 10 cm, on the scene's ground plane
        sample_id = int(item["index"])
        scene = make_scene(np.random.default_rng([SMALL.seed, sample_id]), SMALL)
        np.testing.assert_allclose(scene.boxes, boxes, atol=1e-4)
        grown = points_in_boxes(points, boxes, margin=0.1)
        assert not points_in_boxes(points, boxes, margin=-0.1).any()
        height = points[:, 2] - scene.ground_z(points[:, 0], points[:, 1])
        assert (np.abs(height[~grown.any(axis=1)]) < 0.1).all()
        # num_points: the box's points, between those clearly above the ground and all near the box
        num_points = np.asarray(ds.info(sample_id)["num_points"])
        assert ((grown & (height[:, None] > 0.15)).sum(axis=0) <= num_points).all()
        assert (num_points <= grown.sum(axis=0)).all() and num_points.sum() > 0
        # the nearest box is not occluded: the pixel at its projected centre has its class colour
        nearest = int(np.argmin(np.hypot(boxes[:, 0], boxes[:, 1])))
        cam = item["lidar2cam"][0].double().numpy() @ np.append(boxes[nearest, :3], 1.0)
        u, v, w = item["intrinsics"][0].double().numpy() @ cam[:3]
        col, row = int(round(u / w)), int(round(v / w))
        assert 0 <= col < item["images"].shape[-1] and 0 <= row < item["images"].shape[-2]
        pixel = item["images"][0, :, row, col].numpy() * 255
        label = ds.classes[int(item["gt_labels"][nearest])]
        channel = int(np.argmax(CLASS_COLOURS[label]))
        assert int(np.argmax(pixel)) == channel and pixel[channel] - np.delete(pixel, channel).max() > 30


def test_synthetic_dataset_is_registered_and_builds_into_the_cache():
    ds = DATASETS.build(dict(type="SyntheticScenesDataset", split="val", num_samples=8,
                             split_fractions=[0.5, 0.25, 0.25]))
    assert isinstance(ds, SyntheticScenesDataset) and len(ds) == 2 and ds.metainfo["grid"]["cell_size"] == 0.6
    assert DATASETS.get("DetectionDataset") is DetectionDataset


# -- the format: writer, reader checks, collate --------------------------------------------------------
def _png(size=(8, 4), colour=(255, 0, 0)):
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _tiny_samples(n=3):
    for i in range(n):
        yield {"token": f"tok{i}", "points": np.full((4, 5), float(i), dtype=np.float32),
               "cams": {"CAM_FRONT": {"image": _png(), "intrinsics": [[4.0, 0, 3.5], [0, 4.0, 1.5], [0, 0, 1]],
                                      "lidar2cam": np.eye(4)}},
               "boxes": [[5.0 + i, 0, 0, 4, 2, 1.5, 0, 0, 0]] * (i + 1), "labels": ["car"] * (i + 1),
               "num_points": [3] * (i + 1)}


def _write_tiny(out, **kwargs):
    return write_detection_dataset(out, _tiny_samples(), {"train": [0, 2], "val": [1]}, ["car", "pedestrian"],
                                   "tiny", "test", ["CAM_FRONT"], **kwargs)


def test_writer_and_reader_round_trip(tmp_path):
    out = _write_tiny(tmp_path / "tiny")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["counts"] == {"sample": 3, "box": 6} and meta["point_dims"] == 5
    assert set(meta["sha256"]) == {"samples.jsonl", "splits.json"}
    rows = _records(out)
    assert rows[1]["lidar"] == "files/lidar/tok1.bin" and rows[1]["cams"]["CAM_FRONT"]["file"] == \
        "files/cams/tok1_CAM_FRONT.png"
    ds = DetectionDataset(out, "train")
    assert len(ds) == 2 and ds.metainfo["classes"] == ["car", "pedestrian"]
    item = ds[1]
    assert item["points"].shape == (4, 5) and float(item["points"][0, 0]) == 2.0
    assert item["gt_boxes"].shape == (3, 9) and item["gt_labels"].dtype == torch.int64
    assert item["images"].shape == (1, 3, 4, 8) and float(item["images"][0, 0].min()) == 1.0
    assert item["sample_token"] == "tok2" and int(item["index"]) == 2
    assert "images" not in DetectionDataset(out, "val", load_images=False)[0]
    assert set(DetectionDataset(out, "val", cameras=[], load_points=False)[0]) == {
        "gt_boxes", "gt_labels", "sample_token", "index"}

    with pytest.raises(DatasetExistsError, match="already exists and is not empty; pass --force"):
        _write_tiny(out)
    _write_tiny(out, force=True)
    bad = list(_tiny_samples())
    bad[1]["boxes"][0] = [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match=r"tiny: sample 1 \(token 'tok1'\): boxes\[0\]: got 3 values; expected 9"):
        write_detection_dataset(tmp_path / "bad", bad, {"train": [0]}, ["car"], "tiny", "test", ["CAM_FRONT"])
    with pytest.raises(ValueError, match="splits: val: sample id 0 at position 0 is also in split 'train'"):
        write_detection_dataset(tmp_path / "bad", _tiny_samples(), {"train": [0], "val": [0]}, ["car"], "tiny",
                                "test", ["CAM_FRONT"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]  # failures leave nothing behind


def _edit_line(out, line, edit):
    rows = _records(out)
    edit(rows[line])
    (out / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


BAD_ROWS = {
    "box_size": (lambda r: r["boxes"][0].__setitem__(4, 0.0),
                 r"boxes\[0\]: size \(dx, dy, dz\) = \(4.0, 0.0, 1.5\); every side must be positive"),
    "box_length": (lambda r: r["boxes"].__setitem__(1, [1, 2, 3, 4, 5, 6, 7]),
                   r"boxes\[1\]: got 7 values; expected 9 numbers \[x, y, z, dx, dy, dz, yaw, vx, vy\]"),
    "box_nan": (lambda r: r["boxes"][0].__setitem__(0, float("nan")), r"boxes\[0\]: non-finite value"),
    "label": (lambda r: r["labels"].__setitem__(0, "truck"),
              r"labels\[0\]: unknown label 'truck'; meta.json classes are \['car', 'pedestrian'\]"),
    "label_count": (lambda r: r["labels"].pop(), r"labels: got 1 labels; expected one class name per box \(2\)"),
    "calibration": (lambda r: r["cams"].pop("CAM_FRONT"),
                    r"cams.CAM_FRONT: calibration missing for camera CAM_FRONT \(listed in meta.json cameras\)"),
    "singular": (lambda r: r["cams"]["CAM_FRONT"].__setitem__("lidar2cam", [[1, 0, 0, 0], [2, 0, 0, 0],
                                                                            [0, 0, 1, 0], [0, 0, 0, 1]]),
                 r"cams.CAM_FRONT.lidar2cam: not invertible: the 3x3 block has determinant 0"),
    "last_row": (lambda r: r["cams"]["CAM_FRONT"]["lidar2cam"].__setitem__(3, [0, 0, 1, 1]),
                 r"cams.CAM_FRONT.lidar2cam: last row is \[0.0, 0.0, 1.0, 1.0\]; expected \[0, 0, 0, 1\]"),
    "intrinsics": (lambda r: r["cams"]["CAM_FRONT"].__setitem__("intrinsics", [[0, 0, 1], [0, 1, 1], [0, 0, 1]]),
                   r"cams.CAM_FRONT.intrinsics: got .*; expected \[\[fx, s, cx\], \[0, fy, cy\], \[0, 0, 1\]\] with "
                   r"fx, fy > 0"),
    "token": (lambda r: r.__setitem__("token", "../x"), r"token: got '../x'; expected a non-empty name"),
    "num_points": (lambda r: r.__setitem__("num_points", [1]), r"num_points: got \[1\]; expected an integer >= 0 "
                                                               r"per box \(2\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_reader_names_the_sample_and_field_of_a_bad_row(tmp_path, case):
    out = _write_tiny(tmp_path / "tiny")
    edit, match = BAD_ROWS[case]
    _edit_line(out, 1, edit)
    with pytest.raises(DatasetFormatError, match=r"samples.jsonl: line 2 \(sample 1, token '(tok1|\.\./x)'\): "
                                                 + match):
        DetectionDataset(out, "train")


def test_reader_file_checks(tmp_path):
    out = _write_tiny(tmp_path / "tiny")
    lidar = out / "files/lidar/tok2.bin"
    with open(lidar, "ab") as fh:
        fh.write(np.zeros(4, dtype=np.float32).tobytes())  # 4 points x 5 columns + 4 values: 6 columns?
    with pytest.raises(DatasetFormatError, match=r"tok2.bin: points: size 96 bytes is not a multiple of 20 \(float32 "
                                                 r"x 5 columns .*\); wrong column count\? \(sample 2, token 'tok2'\)"):
        DetectionDataset(out, "train")
    DetectionDataset(out, "val")  # only the split's files are checked

    points = np.zeros((4, 5), dtype=np.float32)
    points[3, 2] = np.inf
    points.tofile(lidar)
    ds = DetectionDataset(out, "train")  # values are checked when loaded
    with pytest.raises(DatasetFormatError, match=r"tok2.bin: points: non-finite value inf at point 3, column 2 \(z\) "
                                                 r"\(sample 2, token 'tok2'\)"):
        ds[1]
    (out / "files/cams/tok1_CAM_FRONT.png").unlink()
    with pytest.raises(DatasetFormatError, match=r"tok1_CAM_FRONT.png: cams.CAM_FRONT.file: image file missing "
                                                 r"\(sample 1, token 'tok1', split 'val'\)"):
        DetectionDataset(out, "val")
    DetectionDataset(out, "val", load_images=False)


@pytest.mark.parametrize("edit, match", [
    (lambda m: m.update(task="retrieval"), r"meta.json: task: got 'retrieval'; DetectionDataset reads 'detection'"),
    (lambda m: m["counts"].update(sample=4), r"samples.jsonl: lines: 3 lines but meta.json counts.sample is 4"),
    (lambda m: m.pop("cameras"), r"meta.json: cameras: required key missing"),
])
def test_reader_meta_checks(tmp_path, edit, match):
    out = _write_tiny(tmp_path / "tiny")
    meta = json.loads((out / "meta.json").read_text())
    edit(meta)
    (out / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetFormatError, match=match):
        DetectionDataset(out, "train")


def test_reader_split_checks(tmp_path):
    out = _write_tiny(tmp_path / "tiny")
    (out / "splits.json").write_text(json.dumps({"train": [0, 2], "val": [2]}))
    with pytest.raises(DatasetFormatError, match=r"splits.json: val: sample id 2 at position 0 is also in split "
                                                 r"'train'; splits must not overlap"):
        DetectionDataset(out, "train")
    with pytest.raises(DatasetFormatError, match=r"splits.json: test: split missing; the file has \['train', 'val'\]"):
        DetectionDataset(out, "test")
    with pytest.raises(ValueError, match=r"cameras \['CAM_BACK'\]"):
        DetectionDataset(out, "train", cameras=["CAM_BACK"])


def test_detection_collate_keeps_lists_and_stacks_the_rest(tmp_path):
    out = _write_tiny(tmp_path / "tiny")
    assert FUNCTIONS.get("detection_collate") is detection_collate  # what configs name in collate_fn
    ds = DetectionDataset(out, "train")
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=FUNCTIONS.get("detection_collate"))))
    assert isinstance(batch["points"], list) and [p.shape for p in batch["points"]] == [(4, 5), (4, 5)]
    assert [b.shape for b in batch["gt_boxes"]] == [(1, 9), (3, 9)] and [len(x) for x in batch["gt_labels"]] == [1, 3]
    assert batch["images"].shape == (2, 1, 3, 4, 8) and batch["intrinsics"].shape == (2, 1, 3, 3)
    assert batch["lidar2cam"].shape == (2, 1, 4, 4) and batch["index"].tolist() == [0, 2]
    assert batch["sample_token"] == ["tok0", "tok2"]

    items = [ds[0], ds[1]]
    items[1]["images"] = torch.zeros(1, 3, 6, 8)
    with pytest.raises(ValueError, match=r"'images' has different shapes in one batch .*; give the dataset "
                                         r"image_size=\(H, W\)"):
        detection_collate(items)

    resized = DetectionDataset(out, "train", image_size=(8, 16))[0]
    assert resized["images"].shape == (1, 3, 8, 16)
    # doubled: fx 4 -> 8, cx 3.5 (the centre of 8 pixels) -> 7.5 (the centre of 16)
    np.testing.assert_allclose(resized["intrinsics"][0].numpy(), [[8, 0, 7.5], [0, 8, 3.5], [0, 0, 1]])
    np.testing.assert_allclose(resize_intrinsics(np.eye(3), 0.5, 0.5), [[0.5, 0, -0.25], [0, 0.5, -0.25], [0, 0, 1]])
