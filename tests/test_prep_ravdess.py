"""data_prep/ravdess.py on a tiny RAVDESS tree with the real layout and file names, and on the
official preprocessed npy triple."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from data_prep import ravdess
from xmodal.data.paired import PairedDataset
from xmodal.data.writer import DatasetExistsError, official_splits
from xmodal.errors import DatasetFormatError

REPO = Path(__file__).resolve().parents[1]
# (actor folder, stem without the modality field, number of video frames, audio seconds)
TAKES = [
    ("Actor_01", "01-03-01-01-01-01", 110, 4.0),  # happy; longer than 3.6 s: centre crop
    ("Actor_01", "01-05-02-02-02-01", 40, 2.0),  # angry; 40 frames: the last 9 selected frames stay black
    ("Actor_02", "01-01-01-01-01-02", 110, 3.0),  # neutral
    ("Actor_02", "01-02-02-01-02-02", 110, 3.0),  # calm
    ("Actor_02", "01-08-01-02-01-02", 110, 3.0),  # surprised
]
LABELS = [2, 4, 0, 1, 7]  # emotion field - 1, in the official order (actor, then file name)


def _write_video(path: Path, frames: int, shade: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (96, 64))
    assert writer.isOpened()
    for i in range(frames):  # flat frames: blue = 2·frame index, so the selected frames can be read back
        writer.write(np.full((64, 96, 3), (2 * i, shade, 255 - 2 * i), np.uint8))
    writer.release()


def make_ravdess(root: Path) -> Path:
    t = np.arange(int(48000 * 4.0)) / 48000
    for k, (actor, stem, frames, seconds) in enumerate(TAKES):
        (root / actor).mkdir(parents=True, exist_ok=True)
        _write_video(root / actor / f"01-{stem}.mp4", frames, 60 + 20 * k)
        tone = 0.3 * np.sin(2 * np.pi * (200 + 150 * k) * t) * np.sin(2 * np.pi * 1.5 * t)
        sf.write(root / actor / f"03-{stem}.wav", tone[: int(48000 * seconds)], 48000, subtype="PCM_16")
    # ignored like the official code: a video-only copy and a song clip
    _write_video(root / "Actor_01" / "02-01-03-01-01-01-01.mp4", 5, 0)
    _write_video(root / "Actor_02" / "01-02-03-01-01-01-02.mp4", 5, 0)
    (root / "Actor_02" / ".DS_Store").write_bytes(b"\0")
    return root


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return make_ravdess(tmp_path_factory.mktemp("ravdess") / "RAVDESS")


@pytest.fixture(scope="module")
def converted(src, tmp_path_factory):
    return ravdess.convert(src, tmp_path_factory.mktemp("out") / "ravdess", face_detector="none")


def test_official_constants():
    assert ravdess.FRAME_INDICES == (3, 10, 17, 24, 31, 39, 46, 53, 60, 67, 75, 82, 89, 96, 103)
    assert ravdess.CLIP_SAMPLES == 79_380 and ravdess.SHAPES == {"video": (15, 3, 224, 224), "audio": (15, 156)}


def test_convert_gives_official_shapes_order_labels_and_split(src, converted):
    meta = json.loads((converted / "meta.json").read_text())
    assert meta["classes"] == ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    assert meta["modalities"]["video"]["shape"] == [15, 3, 224, 224]
    assert meta["modalities"]["audio"] == {"shape": [15, 156], "dtype": "float32",
                                           "layout": meta["modalities"]["audio"]["layout"]}
    names = [f"{actor}/01-{stem}" for actor, stem, _, _ in TAKES]
    assert (converted / "sample_names.txt").read_text().split() == names
    assert np.load(converted / "labels.npy").tolist() == LABELS
    splits = official_splits(len(TAKES))
    assert [len(splits[s]) for s in ("train", "val", "test")] == [3, 1, 1]
    for split in ("train", "val", "test"):
        ds = PairedDataset(converted, split=split)
        assert ds.indices.tolist() == splits[split]
        sample = ds[0]
        assert sample["video"].shape == (15, 3, 224, 224) and sample["video"].dtype == sample["audio"].dtype
        assert sample["audio"].shape == (15, 156) and int(sample["label"]) == LABELS[splits[split][0]]


def test_video_frames_channels_and_scaling(converted):
    meta = json.loads((converted / "meta.json").read_text())
    scale = meta["normalization"]["video"]
    low, high = np.array(scale["min"]), np.array(scale["max"])
    video = np.load(converted / "video.npy", mmap_mode="r")
    assert video.dtype == np.float32 and video.min() == 0.0 and video.max() == 1.0
    pixels = video * (high - low)[None, None, :, None, None] + low[None, None, :, None, None]  # undo the scaling
    blue = pixels[:, :, 0].mean(axis=(2, 3))  # BGR, as OpenCV decodes and the official code keeps
    expected = 2 * np.array(ravdess.FRAME_INDICES, dtype=float)
    np.testing.assert_allclose(blue[0], expected, atol=4)  # mp4v is lossy
    np.testing.assert_allclose(blue[1, :6], expected[:6], atol=4)  # 40 frames: indices 3 … 39 exist
    assert np.all(pixels[1, 6:] == 0)  # frames past the end are black, as in the official script
    assert abs(pixels[2, 0, 1].mean() - (60 + 20 * 2)) < 4  # green shade of the third take


def test_audio_is_the_official_mfcc_scaled_per_sample(src, converted):
    audio = np.load(converted / "audio.npy")
    assert audio.shape == (5, 15, 156)
    np.testing.assert_allclose(audio.min(axis=(1, 2)), 0)
    np.testing.assert_allclose(audio.max(axis=(1, 2)), 1)
    meta = json.loads((converted / "meta.json").read_text())
    resampler = meta["preprocessing"]["resampler"]
    assert resampler == ravdess.available_resampler()
    clip = ravdess.load_clip_audio(src / "Actor_01" / "03-01-05-02-02-02-01.wav", resampler)
    assert clip.shape == (79_380,) and np.all(clip[int(2.0 * 22050) + 1:] == 0)  # 2 s, zero-padded at the end
    features = ravdess.mfcc(clip)
    np.testing.assert_allclose(audio[1], (features - features.min()) / (features.max() - features.min()), atol=1e-6)


def test_mfcc_matches_librosa():
    librosa = pytest.importorskip("librosa")
    y = np.random.default_rng(0).standard_normal(79_380).astype(np.float32) * 0.1
    np.testing.assert_allclose(ravdess.mfcc(y), librosa.feature.mfcc(y=y, sr=22050, n_mfcc=15), atol=1e-3)


def test_face_box_fill_rules(src, monkeypatch):
    used = []
    monkeypatch.setattr(ravdess, "crop_face", lambda frame, box: used.append(box) or np.zeros((224, 224, 3), np.uint8))
    answers = iter([None, None, (1, 2, 30, 40), None] + [(5, 5, 50, 50)] * 11)
    clip, found = ravdess.read_face_clip(src / "Actor_01" / "01-01-03-01-01-01-01.mp4", lambda frame: next(answers))
    assert found and clip.shape == (15, 224, 224, 3)
    # leading misses take the first box found; later misses keep the previous frame's box
    assert used[:5] == [(1, 2, 30, 40)] * 4 + [(5, 5, 50, 50)]
    used.clear()
    _, found = ravdess.read_face_clip(src / "Actor_01" / "01-01-03-01-01-01-01.mp4", lambda frame: None)
    assert not found and used == [None] * 15  # no face at all: whole frames
    crop = ravdess.crop_face(np.arange(64 * 96 * 3, dtype=np.uint8).reshape(64, 96, 3), (-10, 8, 40, 500))
    assert crop.shape == (224, 224, 3)  # boxes past the frame edge are clipped


def test_detectors_are_usable_or_explain_what_is_missing(src, tmp_path):
    for name in ("haar", "mtcnn"):
        try:
            ravdess.check_detector(name)
        except ImportError as err:
            assert "--face-detector" in str(err)
            with pytest.raises(ImportError):
                ravdess.convert(src, tmp_path / name, face_detector=name)
            continue
        out = ravdess.convert(src, tmp_path / name, face_detector=name)  # no real faces: whole frames
        meta = json.loads((out / "meta.json").read_text())
        assert meta["preprocessing"]["face_detector"] == name and len(meta["preprocessing"]["no_face_detected"]) == 5


def test_cli_workers_and_overwrite_protection(src, converted, tmp_path, capsys):
    out = tmp_path / "ravdess"
    cmd = [sys.executable, "data_prep/ravdess.py", "--src", str(src), "--out", str(out), "--face-detector", "none",
           "--workers", "2"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "5 samples" in done.stdout and "1440" in done.stderr
    for name in ("video.npy", "audio.npy", "labels.npy", "splits.json"):  # same result as in one process
        assert (out / name).read_bytes() == (converted / name).read_bytes()

    assert ravdess.main(cmd[2:]) == 2  # refuses to overwrite
    assert "--force" in capsys.readouterr().err
    with pytest.raises(DatasetExistsError):
        ravdess.convert(src, out, face_detector="none")
    assert ravdess.main([*cmd[2:-2], "--force", "--split-group", "3", "--dtype", "float16"]) == 0
    assert PairedDataset(out, split="test").indices.tolist() == official_splits(5, 3)["test"]
    assert json.loads((out / "meta.json").read_text())["modalities"]["video"]["dtype"] == "float16"


def _copy_tree(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_skip_bad_leaves_out_unreadable_clips_lists_them_and_keeps_the_splits(src, converted, tmp_path):
    root = _copy_tree(src, tmp_path / "RAVDESS")
    _truncate(root / "Actor_02" / "01-01-02-02-01-02-02.mp4")  # sample 3 (train)
    _truncate(root / "Actor_02" / "03-01-08-01-02-01-02.wav")  # sample 4 (train)
    out = _copy_tree(converted, tmp_path / "ravdess")  # an earlier dataset, to be replaced
    before = _files(out)
    with pytest.raises(DatasetFormatError, match=r"01-01-02-02-01-02-02\.mp4: video: .*--skip-bad"):
        ravdess.convert(root, out, face_detector="none", force=True)
    assert _files(out) == before  # a failed rebuild leaves the earlier dataset as it was

    assert ravdess.main(["--src", str(root), "--out", str(out), "--face-detector", "none", "--force",
                         "--skip-bad"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert [(e["file"], e["sample"]) for e in meta["skipped"]] == [
        ("Actor_02/01-01-02-02-01-02-02.mp4", "Actor_02/01-01-02-02-01-02-02"),
        ("Actor_02/03-01-08-01-02-01-02.wav", "Actor_02/01-01-08-01-02-01-02")]
    assert meta["skipped"][0]["reason"].startswith("video: cannot be opened (truncated: ")
    assert meta["skipped"][1]["reason"].startswith("audio: truncated: the 'data' chunk")
    assert "2 unreadable sample(s) skipped" in meta["split_protocol"]
    # the official split of all 5 clips ({train: [0, 3, 4], val: [2], test: [1]}) without clips 3 and 4
    assert json.loads((out / "splits.json").read_text()) == {"train": [0], "val": [2], "test": [1]}
    assert np.load(out / "labels.npy").tolist() == LABELS[:3]
    assert (out / "sample_names.txt").read_text().split() == [f"{a}/01-{stem}" for a, stem, _, _ in TAKES[:3]]
    np.testing.assert_array_equal(np.load(out / "audio.npy"), np.load(converted / "audio.npy")[:3])  # per sample
    assert PairedDataset(out, split="val")[0]["video"].shape == (15, 3, 224, 224)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RAVDESS", "ravdess"]  # no temporary directory left


def test_skip_bad_with_every_clip_unreadable_writes_nothing(src, tmp_path):
    root = _copy_tree(src, tmp_path / "RAVDESS")
    for path in root.glob("Actor_*/03-*.wav"):
        _truncate(path)
    with pytest.raises(DatasetFormatError, match=r"RAVDESS: skipped: all 5 clips have unreadable files"):
        ravdess.convert(root, tmp_path / "out", face_detector="none", skip_bad=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RAVDESS"]


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "Actor_02" / "01-01-01-01-01-01-02.mp4").write_bytes(b"not a video"),
     r"Actor_02/01-01-01-01-01-01-02.mp4: video: cannot be opened"),
    (lambda r: (r / "Actor_02" / "01-01-01-01-01-01-02.mp4").write_bytes(b""),
     r"Actor_02/01-01-01-01-01-01-02.mp4: video: cannot be opened"),
    (lambda r: (r / "Actor_01" / "01-01-09-01-01-01-01.mp4").write_bytes(b""),
     r"Actor_01/01-01-09-01-01-01-01.mp4: file name: emotion 09 is outside 01-08"),
    (lambda r: (r / "Actor_01" / "01-01-03-01-01.mp4").write_bytes(b""),
     r"01-01-03-01-01.mp4: file name: '01-01-03-01-01.mp4'; expected MM-VV-EE-II-SS-RR-AA.mp4"),
    (lambda r: (r / "Actor_01" / "01-01-03-01-01-01-02.mp4").write_bytes(b""),
     r"01-01-03-01-01-01-02.mp4: file name: actor 02 but the file is in Actor_01"),
    (lambda r: (r / "Actor_02" / "03-01-08-01-02-01-02.wav").unlink(),
     r"Actor_02/03-01-08-01-02-01-02.wav: audio: file missing; expected the audio-only take of 01-01-08"),
    (lambda r: (r / "Actor_02" / "03-01-08-01-02-01-02.wav").write_bytes(b"RIFF garbage"),
     r"Actor_02/03-01-08-01-02-01-02.wav: audio: not a readable audio file"),
    # cut short, as by an interrupted download: OpenCV cannot open the video (its index is at the end) ...
    (lambda r: _truncate(r / "Actor_02" / "01-01-01-01-01-01-02.mp4"),
     r"Actor_02/01-01-01-01-01-01-02.mp4: video: cannot be opened \(truncated: box 'mdat' at byte \d+ runs to "
     r"byte [\d,]+, but the file ends at byte [\d,]+\); .*--skip-bad leaves such samples out"),
    # ... and libsndfile would read the half of the audio that is left without an error
    (lambda r: _truncate(r / "Actor_02" / "03-01-08-01-02-01-02.wav"),
     r"Actor_02/03-01-08-01-02-01-02.wav: audio: truncated: the 'data' chunk at byte 36 runs to byte [\d,]+, "
     r"but the file ends at byte [\d,]+; extract the file again \(--skip-bad"),
])
def test_bad_input_is_named_and_nothing_is_written(src, tmp_path, damage, message):
    root = _copy_tree(src, tmp_path / "RAVDESS")
    damage(root)
    with pytest.raises(DatasetFormatError, match=message):
        ravdess.convert(root, tmp_path / "out", face_detector="none")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out-*"))


def test_missing_actor_folders_hint_at_from_npy(tmp_path):
    np.save(tmp_path / "video_data.npy", np.zeros(1))
    with pytest.raises(DatasetFormatError, match="no Actor_XX folders.*--from-npy"):
        ravdess.convert(tmp_path, tmp_path / "out")


# -- the official preprocessed arrays -------------------------------------------------------------
def make_npy(root: Path, n: int = 6) -> Path:
    rng = np.random.default_rng(1)
    root.mkdir(parents=True)
    np.save(root / "video_data.npy", rng.integers(10, 250, (n, 15, 3, 224, 224), dtype=np.uint8))
    np.save(root / "audio_data.npy", (rng.standard_normal((n, 15, 156)) * 50).astype(np.float32))
    np.save(root / "label_data.npy", np.arange(n) % 8)
    return root


def test_from_npy_applies_the_official_scaling(tmp_path):
    root = make_npy(tmp_path / "RAVDESS_preprocessed_npy")
    out = ravdess.convert(root, tmp_path / "ravdess", from_npy=True)
    video, audio = np.load(root / "video_data.npy"), np.load(root / "audio_data.npy")
    # utils.min_max_normalize: 5-D per channel over (N, T, H, W), 3-D per sample
    v_low, v_high = video.min(axis=(0, 1, 3, 4), keepdims=True), video.max(axis=(0, 1, 3, 4), keepdims=True)
    np.testing.assert_array_equal(np.load(out / "video.npy"), ((video - v_low) / (v_high - v_low)).astype(np.float32))
    a_low, a_high = audio.min(axis=(1, 2), keepdims=True), audio.max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(np.load(out / "audio.npy"), (audio - a_low) / (a_high - a_low), rtol=1e-6)
    ds = PairedDataset(out, split="train")
    assert ds.indices.tolist() == official_splits(6)["train"] and int(ds[0]["label"]) == ds.indices[0] % 8
    assert "sample_names" not in json.loads((out / "meta.json").read_text())
    # the CLI takes the parent folder too
    assert ravdess.main(["--from-npy", str(tmp_path), "--out", str(tmp_path / "half"), "--dtype", "float16"]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "half" / "video.npy"), np.load(out / "video.npy"), atol=1e-3)


@pytest.mark.parametrize("damage, message", [
    (lambda r: np.save(r / "label_data.npy", np.array([0, 1, 2, 3, 8, 0])),
     r"label_data.npy: labels: label 8 at row 4 is outside \[0, 7\]"),
    (lambda r: np.save(r / "audio_data.npy", np.zeros((6, 156, 15), np.float32)),
     r"audio_data.npy: audio: shape \[6, 156, 15\]; expected \[N, 15, 156\]"),
    (lambda r: np.save(r / "audio_data.npy", np.zeros((5, 15, 156), np.float32)),
     r"audio_data.npy: audio: 5 samples but label_data.npy has 6"),
    (lambda r: np.save(r / "audio_data.npy", np.zeros((6, 15, 156), np.float32)),
     r"audio_data.npy: audio: sample 0 is constant"),
    (lambda r: (r / "video_data.npy").write_bytes(b"garbage"), r"video_data.npy: video: not a readable .npy"),
    (lambda r: (r / "video_data.npy").unlink(), r"video_data.npy: video: file missing"),
])
def test_bad_npy_is_named_and_nothing_is_written(tmp_path, damage, message):
    root = make_npy(tmp_path / "npy")
    damage(root)
    with pytest.raises(DatasetFormatError, match=message):
        ravdess.convert(root, tmp_path / "out", from_npy=True)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out-*"))
