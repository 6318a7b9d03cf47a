"""xmodal.data.integrity (is a source file cut short?) and xmodal.data.skipped (--skip-bad's bookkeeping),
on files in their real formats written here and then truncated."""

import io
import struct

import cv2
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from xmodal.data.integrity import truncation
from xmodal.data.skipped import SkippedSources, drop_from_splits
from xmodal.errors import DatasetFormatError


def _wav(path):
    sf.write(path, 0.3 * np.sin(np.arange(4800) / 5), 48000, subtype="PCM_16")
    return path


def _mp4(path):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (32, 32))
    assert writer.isOpened()
    for i in range(10):
        writer.write(np.full((32, 32, 3), 20 * i, np.uint8))
    writer.release()
    return path


def _image(path, fmt):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path, format=fmt)
    return path


WRITERS = {".wav": _wav, ".mp4": _mp4, ".jpg": lambda p: _image(p, "JPEG"), ".png": lambda p: _image(p, "PNG")}


@pytest.mark.parametrize("suffix", sorted(WRITERS))
def test_whole_files_pass_and_cut_ones_are_named(tmp_path, suffix):
    path = WRITERS[suffix](tmp_path / f"a{suffix}")
    assert truncation(path) is None
    data = path.read_bytes()
    for keep in (len(data) // 2, len(data) - 3):
        path.write_bytes(data[:keep])
        assert truncation(path).startswith("truncated: "), (suffix, keep)
    path.write_bytes(b"")
    assert truncation(path) == "empty file (0 bytes)"


def test_messages_say_what_was_declared_and_what_is_there(tmp_path):
    path = _wav(tmp_path / "a.wav")
    data = path.read_bytes()
    path.write_bytes(data[:1000])
    assert truncation(path) == (f"truncated: the 'data' chunk at byte 36 runs to byte {len(data):,}, but the file "
                                "ends at byte 1,000")
    path.write_bytes(data[:44])  # the header alone: libsndfile reads it as a clip of 0 samples
    assert truncation(path).startswith("truncated: the 'data' chunk at byte 36")
    streamed = bytearray(data)
    streamed[40:44] = struct.pack("<I", 0xFFFFFFFF)  # a streamed WAVE never got its length: not judged
    path.write_bytes(bytes(streamed[:1000]))
    assert truncation(path) is None


def test_other_formats_and_foreign_content_are_left_to_the_decoder(tmp_path):
    for name, content in (("a.npy", b"\x93NUMPY"), ("b.mp4", b"not a video"), ("c.wav", b"RIFF garbage"),
                          ("d.jpg", b"GIF89a"), ("e.png", b"\x89PNX")):
        (tmp_path / name).write_bytes(content)
        assert truncation(tmp_path / name) is None, name
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="JPEG")
    (tmp_path / "f.jpg").write_bytes(buffer.getvalue() + b"camera trailer")  # data after the end marker: whole
    assert truncation(tmp_path / "f.jpg") is None


def test_skipped_sources_raise_with_the_hint_or_record_relative_paths(tmp_path):
    error = DatasetFormatError(tmp_path / "src" / "a" / "b.wav", "audio", "truncated: ...")
    with pytest.raises(DatasetFormatError, match=r"b\.wav: audio: truncated: \.\.\. \(--skip-bad leaves such samples "
                                                 r"out\)"):
        SkippedSources(False, tmp_path / "src").handle(error, "b")
    assert SkippedSources(False).meta() == {}
    skipped = SkippedSources(True, tmp_path / "src")
    assert skipped.meta() == {"skipped": []}  # asked for, none needed
    skipped.handle(error, "b")
    skipped.add("/elsewhere/c.jpg", "file: missing")
    assert len(skipped) == 2 and skipped.meta() == {"skipped": [
        {"file": "a/b.wav", "reason": "audio: truncated: ...", "sample": "b"},
        {"file": "/elsewhere/c.jpg", "reason": "file: missing"}]}


def test_drop_from_splits_keeps_every_other_sample_in_its_split(tmp_path):
    splits = {"train": [4, 0, 2], "val": [1], "test": [3, 5]}
    assert drop_from_splits(splits, [0, 1, 3, 4, 5], tmp_path) == {"train": [3, 0], "val": [1], "test": [2, 4]}
    with pytest.raises(DatasetFormatError, match=r"skipped: split 'val': all its 1 sample\(s\) were skipped"):
        drop_from_splits(splits, [0, 2, 3, 4, 5], tmp_path)
