"""A minimal PNG reader and writer (zlib + numpy; Pillow is not a dependency).

Reads non-interlaced PNGs of every colour type (greyscale, RGB, palette, greyscale+alpha, RGBA) at
every legal bit depth, with all five row filters, checking chunk CRCs. Writes greyscale, grey+alpha,
RGB or RGBA at 8 or 16 bits with a chosen row filter (the filters exist to test the reader).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from memory_models.errors import InputError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
FILTERS = {"none": 0, "sub": 1, "up": 2, "average": 3, "paeth": 4}


def _chunks(data: bytes, path: Path):
    pos = len(SIGNATURE)
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        crc = data[pos + 8 + length : pos + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise InputError(f"truncated PNG file: {path}")
        if zlib.crc32(ctype + body) != struct.unpack(">I", crc)[0]:
            raise InputError(f"corrupt PNG file (bad CRC in {ctype.decode('latin-1')} chunk): {path}")
        yield ctype, body
        pos += 12 + length
        if ctype == b"IEND":
            return
    raise InputError(f"truncated PNG file (no IEND chunk): {path}")


def _paeth_row(cur: bytearray, prev: bytes, bpp: int) -> None:
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        p = a + b - c
        pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
        cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF


def _unfilter(raw: bytes, height: int, stride: int, bpp: int, path: Path) -> np.ndarray:
    if len(raw) < height * (stride + 1):
        raise InputError(f"truncated PNG image data: {path}")
    rows = np.frombuffer(raw, np.uint8, count=height * (stride + 1)).reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        ftype, line = rows[y, 0], rows[y, 1:]
        if ftype == 0:
            cur = line.copy()
        elif ftype == 1:  # Sub: running sum per byte-of-pixel
            pad = (-stride) % bpp
            cur = (
                np.cumsum(np.pad(line, (0, pad)).reshape(-1, bpp).astype(np.uint32), axis=0)
                .astype(np.uint8)
                .ravel()[:stride]
            )
        elif ftype == 2:  # Up
            cur = line + prev
        elif ftype == 3:  # Average (sequential within a row)
            cur_b = bytearray(line.tobytes())
            pb = prev.tobytes()
            for i in range(stride):
                left = cur_b[i - bpp] if i >= bpp else 0
                cur_b[i] = (cur_b[i] + ((left + pb[i]) >> 1)) & 0xFF
            cur = np.frombuffer(bytes(cur_b), np.uint8)
        elif ftype == 4:  # Paeth
            cur_b = bytearray(line.tobytes())
            _paeth_row(cur_b, prev.tobytes(), bpp)
            cur = np.frombuffer(bytes(cur_b), np.uint8)
        else:
            raise InputError(f"corrupt PNG file (row filter {ftype}): {path}")
        out[y] = cur
        prev = out[y]
    return out


def read_png(path: Path) -> np.ndarray:
    """The image as (H, W) for greyscale or (H, W, C) otherwise; uint8, or uint16 for 16-bit files.
    Palette images are expanded to RGB(A); sub-byte greyscale is scaled to 0..255."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"file not found: {path}") from None
    except OSError as e:
        raise InputError(f"cannot read {path}: {e}") from None
    if not data.startswith(SIGNATURE):
        raise InputError(f"not a PNG file: {path}")
    header, idat, palette, trns = None, [], None, None
    for ctype, body in _chunks(data, path):
        if ctype == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif ctype == b"tRNS":
            trns = body
    if header is None or not idat:
        raise InputError(f"corrupt PNG file (no IHDR or IDAT): {path}")
    width, height, depth, color, _comp, _filt, interlace = header
    if color not in CHANNELS or depth not in (1, 2, 4, 8, 16) or width == 0 or height == 0:
        raise InputError(f"unsupported PNG (colour type {color}, bit depth {depth}): {path}")
    if interlace:
        raise InputError(f"unsupported interlaced PNG (save it without interlacing): {path}")
    channels = CHANNELS[color]
    bits = depth * channels
    stride = (width * bits + 7) // 8
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as e:
        raise InputError(f"corrupt PNG file ({e}): {path}") from None
    rows = _unfilter(raw, height, stride, max(bits // 8, 1), path)
    if depth == 16:
        img = rows.view(">u2").astype(np.uint16).reshape(height, width, channels)
    elif depth == 8:
        img = rows.reshape(height, width, channels)
    else:
        per = 8 // depth
        shifts = (8 - depth * (np.arange(per) + 1)).astype(np.uint8)
        vals = (rows[:, :, None] >> shifts) & ((1 << depth) - 1)
        img = vals.reshape(height, -1)[:, :width].reshape(height, width, 1)
        if color == 0:
            img = (img.astype(np.uint16) * 255 // ((1 << depth) - 1)).astype(np.uint8)
    if color == 3:
        if palette is None:
            raise InputError(f"corrupt PNG file (palette image without PLTE): {path}")
        index = img[:, :, 0]
        if index.max() >= len(palette):
            raise InputError(f"corrupt PNG file (palette index out of range): {path}")
        img = palette[index]
        if trns is not None:
            alpha = np.full(len(palette), 255, np.uint8)
            alpha[: len(trns)] = np.frombuffer(trns, np.uint8)[: len(palette)]
            img = np.concatenate([img, alpha[index][:, :, None]], axis=2)
    return img[:, :, 0] if img.shape[2] == 1 else img


def to_gray(img: np.ndarray) -> np.ndarray:
    """float32 greyscale in [0, 1] (ITU-R BT.601 luma for colour; alpha is dropped)."""
    scale = 65535.0 if img.dtype == np.uint16 else 255.0
    x = img.astype(np.float32) / scale
    if x.ndim == 2:
        return x
    if x.shape[2] in (1, 2):
        return x[:, :, 0]
    return x[:, :, 0] * 0.299 + x[:, :, 1] * 0.587 + x[:, :, 2] * 0.114


def _filter_rows(rows: np.ndarray, ftype: int, bpp: int) -> np.ndarray:
    r = rows.astype(np.int32)
    left = np.zeros_like(r)
    left[:, bpp:] = r[:, :-bpp]
    up = np.zeros_like(r)
    up[1:] = r[:-1]
    upleft = np.zeros_like(r)
    upleft[1:, bpp:] = r[:-1, :-bpp]
    if ftype == 0:
        pred = np.zeros_like(r)
    elif ftype == 1:
        pred = left
    elif ftype == 2:
        pred = up
    elif ftype == 3:
        pred = (left + up) >> 1
    else:
        p = left + up - upleft
        pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
        pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    return ((r - pred) & 0xFF).astype(np.uint8)


def write_png(path: Path, img: np.ndarray, filter: str = "none") -> None:
    """Write (H, W) or (H, W, C) with C in 1..4, dtype uint8 or uint16."""
    img = np.asarray(img)
    if img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_png needs uint8 or uint16, got {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    h, w, c = img.shape
    color = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    depth = 16 if img.dtype == np.uint16 else 8
    rows = img.astype(">u2").view(np.uint8) if depth == 16 else img
    rows = np.ascontiguousarray(rows).reshape(h, -1)
    ftype = FILTERS[filter]
    filtered = _filter_rows(rows, ftype, c * depth // 8)
    raw = np.concatenate([np.full((h, 1), ftype, np.uint8), filtered], axis=1).tobytes()

    def chunk(ctype: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))

    Path(path).write_bytes(
        SIGNATURE
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def _resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) linear-interpolation weights, widened when shrinking (antialiasing, like PIL)."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centers = (np.arange(n_out) + 0.5) * scale - 0.5
    dist = np.abs(np.arange(n_in)[None, :] - centers[:, None]) / support
    w = np.maximum(0.0, 1.0 - dist)
    w /= w.sum(axis=1, keepdims=True)
    return w.astype(np.float32)


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear (antialiased) resize of a float (H, W) image to size = (height, width)."""
    h, w = img.shape
    if (h, w) == tuple(size):
        return img.astype(np.float32, copy=False)
    return _resize_weights(h, size[0]) @ img.astype(np.float32) @ _resize_weights(w, size[1]).T
