"""IDX files, the format of MNIST and Fashion-MNIST, gzipped or not.

An IDX file is a 4-byte magic number ``0x00 0x00 <type code> <ndim>``, then
``ndim`` big-endian uint32 sizes, then the values in C order, big-endian.
Files are recognised as gzip by their first two bytes, not by their name,
so ``train-images-idx3-ubyte`` and ``train-images-idx3-ubyte.gz`` both work
whatever they are called.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from rlgen.errors import InputError, RlgenError

# IDX type code -> big-endian numpy dtype (from the format description on the MNIST page).
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(RlgenError):
    """A file is not a valid IDX file (bad magic number, truncated, unreadable gzip)."""


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError) as e:  # truncated or corrupt gzip stream
        raise IdxFormatError(
            f"{path}: gzip data is truncated or corrupt ({e}); delete the file and "
            "download it again"
        ) from e


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file into a native-endian numpy array.

    Args:
        path: the file, plain or gzip-compressed.

    Returns:
        An array of the shape stored in the header, e.g. (60000, 28, 28) uint8
        for MNIST images or (60000,) uint8 for its labels.

    Raises:
        FileNotFoundError: the file does not exist.
        IdxFormatError: bad magic number, unknown type code, or fewer bytes
            than the header promises.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IdxFormatError(f"{path}: {len(data)} bytes is too short for an IDX header")
    if data[0] != 0 or data[1] != 0 or data[2] not in _CODE_TO_DTYPE:
        raise IdxFormatError(
            f"{path}: bad IDX magic number 0x{data[:4].hex()}; expected 0x0000<type><ndim> "
            f"with type one of {', '.join(f'0x{c:02x}' for c in _CODE_TO_DTYPE)} "
            "(is this an MNIST-format file?)"
        )
    dtype = _CODE_TO_DTYPE[data[2]]
    ndim = data[3]
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IdxFormatError(
            f"{path}: truncated header: {ndim} dimensions need {header_len} bytes, file has {len(data)}"
        )
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header_len + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) < expected:
        raise IdxFormatError(
            f"{path}: truncated: shape {shape} of {dtype.name} needs {expected} bytes, "
            f"file has {len(data)}; delete the file and download it again"
        )
    if len(data) > expected:
        raise IdxFormatError(
            f"{path}: {len(data) - expected} unexpected bytes after the data of shape {shape}"
        )
    values = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return values.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write an array as an IDX file (the inverse of :func:`read_idx`).

    Args:
        path: destination; written to ``path.tmp`` first, then renamed.
        array: uint8, int8, int16, int32, float32 or float64 values, any shape
            with at most 255 dimensions.
        compress: gzip the file; ``None`` means "when the name ends in .gz".

    Returns:
        The path written.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in _CODE_TO_DTYPE.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        allowed = ", ".join(dt.name for dt in codes)
        raise InputError(f"write_idx: dtype {array.dtype} cannot be stored in IDX; allowed: {allowed}")
    if array.ndim > 255:
        raise InputError(f"write_idx: {array.ndim} dimensions; IDX allows at most 255")
    header = bytes([0, 0, codes[native], array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=native.newbyteorder(">")).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        payload = gzip.compress(payload, mtime=0)  # mtime=0: same bytes for same data
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, path)
    return path
