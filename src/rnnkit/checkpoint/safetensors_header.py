"""A safetensors header, checked before the safetensors library reads the file.

A forged header can claim a 2**62-row tensor, offsets past the end of the file or two tensors
over the same bytes; whoever forges the file can forge its sha256 in config.json too, so the
header itself must be safe to act on. :func:`check_safetensors_header` reads only the 8-byte
length and the JSON header (bounded by ``MAX_HEADER_BYTES`` and the file's size; a regular file
only, see ``jsonfile.open_regular``) and refuses
anything that would make a reader allocate or read beyond the file. ``files.py`` calls it
for every ``*.safetensors`` it loads.
"""

from __future__ import annotations

import itertools
import math
import os
from pathlib import Path

from rnnkit.checkpoint.jsonfile import Limits, Refused, loads, open_regular
from rnnkit.errors import short

MAX_HEADER_BYTES = 16 << 20  # a safetensors header: ~100 bytes per tensor
MAX_DIMS = 16
MAX_EMPTY_DIM = 2**31  # a size an empty tensor may have beyond the data region's byte count
#: bytes per element of the safetensors dtypes we read (no sub-byte floats)
DTYPE_BYTES = {
    **dict.fromkeys(("BOOL", "U8", "I8", "F8_E4M3", "F8_E5M2"), 1),
    **dict.fromkeys(("U16", "I16", "F16", "BF16"), 2),
    **dict.fromkeys(("U32", "I32", "F32"), 4),
    **dict.fromkeys(("U64", "I64", "F64", "C64"), 8),
}


def check_safetensors_header(file: Path) -> None:
    """Refuse a safetensors file whose header would make a reader allocate or read beyond it.

    The format: 8 bytes little-endian header length ``n``, ``n`` bytes of JSON
    ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__"?: {str: str}}``,
    then the data region, offsets relative to its start. Checked here before the library sees
    the file: ``n`` fits the file and MAX_HEADER_BYTES; the JSON's size of structure bounded
    by ``n`` before it is parsed (``jsonfile.loads``); no duplicate names; each dtype known;
    at most MAX_DIMS dims, none beyond the data region's size or MAX_EMPTY_DIM (so an empty
    tensor cannot claim 2**62 rows); ``0 <= begin <= end <= data size``; ``numel * itemsize ==
    end - begin``; no two tensors overlap.

    Raises:
        ValueError: the first problem found, on one line.
        FileNotFoundError: ``file`` is missing.
    """
    with open_regular(file) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{size} bytes, shorter than the 8-byte header length")
        n = int.from_bytes(head, "little")
        if n > min(size - 8, MAX_HEADER_BYTES):
            raise ValueError(f"header length {n} exceeds the file ({size} bytes) or the limit")
        raw = f.read(n)
    # an entry is >= 16 bytes a container ({"dtype":..,"shape":[..],"data_offsets":[..]})
    limits = Limits(max_bytes=n, max_values=n // 2 + 8, max_containers=n // 16 + 8)
    try:
        header = loads(raw, limits)
    except Refused as err:
        raise ValueError(f"the header {err}") from None
    if not isinstance(header, dict):
        raise ValueError(f"the header is {type(header).__name__}, not a JSON object")
    data = size - 8 - n
    top = max(data, MAX_EMPTY_DIM)  # an empty tensor's sizes are bounded too: (0, 512) is fine
    spans = []
    for key, info in header.items():
        where = f"tensor {short(key)}"
        if key == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise ValueError("__metadata__ must map strings to strings")
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{where}: expected exactly dtype, shape and data_offsets")
        dtype, shape, (begin, end) = info["dtype"], info["shape"], _pair(info["data_offsets"])
        if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
            raise ValueError(f"{where}: dtype {short(dtype)} is not supported")
        if not _ints(shape) or len(shape) > MAX_DIMS or not all(0 <= d <= top for d in shape):
            raise ValueError(f"{where}: shape must be <= {MAX_DIMS} sizes in [0, {top}]")
        if not 0 <= begin <= end <= data:
            raise ValueError(f"{where}: data_offsets outside the data region [0, {data}]")
        if math.prod(shape) * DTYPE_BYTES[dtype] != end - begin:
            raise ValueError(f"{where}: shape {shape} of {dtype} does not fill {end - begin} bytes")
        spans.append((begin, end, key))
    spans.sort()
    for (_, end, first), (begin, _, second) in itertools.pairwise(spans):
        if begin < end:
            raise ValueError(f"tensors {short(first)} and {short(second)} overlap")


def _ints(value: object) -> bool:
    return isinstance(value, list) and all(type(v) is int for v in value)


def _pair(value: object) -> tuple[int, int]:
    """``data_offsets`` as (begin, end); (-1, -1) (refused by the caller) if malformed."""
    return (value[0], value[1]) if _ints(value) and len(value) == 2 else (-1, -1)
