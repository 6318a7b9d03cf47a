"""Is a source file complete? Cheap structural checks of the containers the ``data_prep/`` scripts read.

A download or an unpacked archive cut short leaves files that some decoders read without complaint:
libsndfile returns the samples a truncated ``.wav`` still holds, OpenCV may decode a truncated
``.mp4`` up to the cut, and a camera image is hard-linked into a detection dataset without being
decoded at all. :func:`truncation` reads only the headers and the tail of a file: a RIFF / WAVE
chunk or an ISO-BMFF (MP4) box that declares more bytes than the file holds, a JPEG without its
end-of-image marker, a PNG without its ``IEND`` chunk, or an empty file. Formats it does not know
are left to their decoder.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

# top-level ISO-BMFF boxes (ISO/IEC 14496-12 and QuickTime); an MP4 starts with one of them
_MP4_BOXES = {b"ftyp", b"styp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pdin", b"uuid", b"meta", b"moof",
              b"mfra", b"sidx", b"ssix", b"prft", b"emsg", b"pnot", b"junk"}
_MP4_SUFFIXES = (".mp4", ".m4a", ".m4v", ".mov", ".3gp")
_JPEG_TAIL = 64 * 1024  # cameras may append a trailer after the end-of-image marker
_PNG_END = b"IEND\xaeB`\x82"


def truncation(path: str | Path) -> str | None:
    """Why ``path`` is incomplete ("truncated: ..." or "empty file"), or None when its structure is whole
    or its format is not one checked here (.wav, .mp4/.m4a/.m4v/.mov/.3gp, .jpg/.jpeg, .png)."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return "empty file (0 bytes)"
    suffix = path.suffix.lower()
    with open(path, "rb") as fh:
        if suffix == ".wav":
            return _riff(fh, size)
        if suffix in _MP4_SUFFIXES:
            return _iso_boxes(fh, size)
        if suffix in (".jpg", ".jpeg"):
            return _jpeg(fh, size)
        if suffix == ".png":
            return _png(fh, size)
    return None


def _cut(what: str, offset: int, end: int, size: int) -> str:
    return f"truncated: {what} at byte {offset:,} runs to byte {end:,}, but the file ends at byte {size:,}"


def _riff(fh: BinaryIO, size: int) -> str | None:
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None  # RF64, RIFX or not a WAVE file: the decoder judges
    offset = 12
    while offset + 8 <= size:
        fh.seek(offset)
        chunk, length = struct.unpack("<4sI", fh.read(8))
        if chunk == b"data" and length == 0xFFFFFFFF:  # streamed: the length was never filled in
            return None
        if offset + 8 + length > size:
            return _cut(f"the '{chunk.decode('latin-1')}' chunk", offset, offset + 8 + length, size)
        if chunk == b"data":
            return None
        offset += 8 + length + (length & 1)  # chunks are padded to an even length
    return None  # no data chunk: the decoder says so


def _iso_boxes(fh: BinaryIO, size: int) -> str | None:
    offset = 0
    while offset < size:
        fh.seek(offset)
        head = fh.read(16)
        if len(head) < 8:
            return f"truncated: {size - offset} stray bytes at byte {offset:,} where a box header (8 bytes) starts"
        length, box = struct.unpack(">I4s", head[:8])
        if offset == 0 and box not in _MP4_BOXES:
            return None  # not an MP4 container: the decoder judges
        if length == 1:  # a 64-bit length follows the type
            if len(head) < 16:
                return f"truncated: the box header at byte {offset:,} is cut"
            length = struct.unpack(">Q", head[8:16])[0]
        elif length == 0:  # the last box, up to the end of the file
            return None
        if length < 8:
            return None  # not a box structure we can follow; the decoder judges
        if offset + length > size:
            return _cut(f"box '{box.decode('latin-1')}'", offset, offset + length, size)
        offset += length
    return None


def _jpeg(fh: BinaryIO, size: int) -> str | None:
    if fh.read(2) != b"\xff\xd8":
        return None  # not a JPEG: the decoder judges
    fh.seek(max(0, size - _JPEG_TAIL))
    # 0xFF 0xD9 appears in the entropy-coded data only as the end-of-image marker (other 0xFF are stuffed)
    if b"\xff\xd9" not in fh.read():
        return f"truncated: no JPEG end-of-image marker (FF D9) in the last {min(size, _JPEG_TAIL):,} bytes"
    return None


def _png(fh: BinaryIO, size: int) -> str | None:
    if fh.read(8) != b"\x89PNG\r\n\x1a\n":
        return None
    fh.seek(max(0, size - 4096))
    if _PNG_END not in fh.read():
        return "truncated: no PNG IEND chunk at the end"
    return None
