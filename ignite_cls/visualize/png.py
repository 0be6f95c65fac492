"""PNG files that remember which sample they show: the source path in an iTXt chunk, read
back without decoding the image, so a file showing another image is never overwritten."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

SOURCE_KEY = b"Source"  # PNG iTXt keyword holding the sample a written image shows


def png_bytes(rgb: np.ndarray, source: str | None = None) -> bytes:
    """`rgb` encoded as PNG, with `source` recorded in an iTXt chunk after the header."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("OpenCV could not encode a PNG")
    data = encoded.tobytes()
    if source is None:
        return data
    chunk = SOURCE_KEY + b"\0\0\0\0\0" + source.encode()  # uncompressed, no language
    itxt = struct.pack(">I", len(chunk)) + b"iTXt" + chunk
    itxt += struct.pack(">I", zlib.crc32(b"iTXt" + chunk))
    end_of_header = 8 + 4 + 4 + 13 + 4  # signature, IHDR length, type, data, CRC
    return data[:end_of_header] + itxt + data[end_of_header:]


def png_source(path: Path) -> str | None:
    """The source recorded by `png_bytes` in the PNG at `path`; None if it has none."""
    try:
        with open(path, "rb") as f:
            if f.read(8) != b"\x89PNG\r\n\x1a\n":
                return None
            while header := f.read(8):
                if len(header) < 8:
                    return None
                length, kind = struct.unpack(">I4s", header)
                if kind in (b"IDAT", b"IEND"):
                    return None
                if kind != b"iTXt":
                    f.seek(length + 4, os.SEEK_CUR)
                    continue
                keyword, _, rest = f.read(length).partition(b"\0")
                f.seek(4, os.SEEK_CUR)
                if keyword == SOURCE_KEY:
                    return rest[4:].decode(errors="replace")
    except OSError:
        return None
    return None


def output_path(folder: Path, stem: str, source: str) -> Path:
    """`folder/stem.png`, unless that file shows another sample (an earlier run on other
    data): then `stem_<hash of source>.png`, the same name for the same sample every time."""
    path = folder / f"{stem}.png"
    if not path.exists() or png_source(path) == source:
        return path
    digest = zlib.crc32(source.encode())
    return folder / f"{stem}_{digest:08x}.png"
