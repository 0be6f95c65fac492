"""Decoding image files into the one format the rest of the code expects: HxWx3 uint8 RGB."""

import os

import cv2
import numpy as np

from ignite_cls.errors import UserError

# Colour (gray is expanded, alpha dropped), any bit depth, EXIF orientation applied.
# IMREAD_UNCHANGED would also keep the depth but skips the EXIF rotation, so phone photos
# would be read sideways.
_DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_JPEG_SOS = 0xDA
# Markers without a length field: TEM, RST0-7, SOI.
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD9)}


class BadImageError(UserError):
    """An image file that is missing, empty, truncated or not an image; names the file."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an HxWx3 uint8 RGB array.

    The bytes are read with NumPy and decoded from memory because `cv2.imread` cannot open
    non-ASCII paths on Windows. 16-bit images are scaled to 8 bits (65535 -> 255).
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise BadImageError(f"cannot decode image: {path} ({e.strerror})") from None
    return decode_image(data.tobytes(), str(path))


def decode_image(data: bytes, name: str) -> np.ndarray:
    """An image file's bytes as HxWx3 uint8 RGB; ``name`` says which image in errors."""
    if not data:
        raise BadImageError(f"cannot decode image: {name} (empty file)")
    if _is_truncated_jpeg(data):
        raise BadImageError(f"cannot decode image: {name} (truncated JPEG)")
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _DECODE_FLAGS)
    except cv2.error:
        image = None
    if image is None:
        raise BadImageError(f"cannot decode image: {name}")
    if image.dtype == np.uint16:
        image = np.round(image / 257.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise BadImageError(f"cannot decode image: {name} (unsupported pixel type {image.dtype})")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _is_truncated_jpeg(data: bytes) -> bool:
    """Whether `data` is a JPEG cut off before its end-of-image marker.

    Some libjpeg builds used by OpenCV 4 only warn on a premature end and fill the missing
    rows with gray, which would silently train on half images. After the first scan header
    the byte pair FF D9 can only be the end-of-image marker (entropy-coded FF bytes are
    followed by 00), so its absence there means the file was cut. The segments before the
    scan are skipped by their lengths, so an EXIF thumbnail's markers are not mistaken for
    the image's. Anything that does not parse as a JPEG is left to the decoder.
    """
    if not data.startswith(_JPEG_SOI):
        return False
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _JPEG_EOI[1]:  # no scan at all: not ours to judge
            return False
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == _JPEG_SOS:
            return data.find(_JPEG_EOI, pos) == -1
    return True
