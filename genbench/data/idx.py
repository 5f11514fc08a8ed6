"""A strict reader of IDX files (LeCun's MNIST format), plain or gzipped.

Format (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code, the number of
dimensions ``d``; then ``d`` big-endian uint32 sizes; then the values, big-endian, row-major.
Every check failing here raises :class:`DataMissing` naming the file and what to do about
it, so a truncated download never surfaces as a numpy or gzip traceback.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from genbench.errors import DataMissing

# type code -> big-endian numpy dtype
IDX_DTYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
GZIP_MAGIC = b"\x1f\x8b"


class CorruptIdx(DataMissing):
    """An IDX file that cannot be read as what it claims to be."""


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in ``path`` (``.gz`` or not: detected from the bytes)."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise _corrupt(path, "not an IDX file (bad magic number)")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES or ndim == 0:
        raise _corrupt(path, f"not an IDX file (type code 0x{code:02x}, {ndim} dimensions)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _corrupt(path, "truncated inside its header")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        what = "truncated" if len(data) - header < expected else "longer than its header says"
        raise _corrupt(path, f"{what}: header {shape} needs {expected} bytes of values, "
                             f"found {len(data) - header}")
    values = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))  # a writable, native-order copy


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataMissing(f"cannot read {path}: {err.strerror or err}") from err
    if raw[:2] != GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise _corrupt(path, f"a damaged gzip stream ({err or type(err).__name__})") from err


def _corrupt(path: Path, problem: str) -> CorruptIdx:
    return CorruptIdx(
        f"{path} is {problem}; delete it and run again to re-download, "
        "or pass --data-dir DIR with intact IDX files"
    )
