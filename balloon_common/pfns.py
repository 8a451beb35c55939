"""PFN lists on the wire: packed little-endian uint32 in a bytes field."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

PAGE_SIZE_BYTES = 4096
MAX_BATCH_PFNS = 256
"""Largest inflate or deflate batch, as the virtio balloon driver sends it."""

WIRE_DTYPE = np.dtype("<u4")


class PfnListError(ValueError):
    """A PFN list that cannot be decoded; the message names the field."""


def pack(pfns: npt.ArrayLike) -> bytes:
    """Encodes PFNs as little-endian uint32."""
    return np.asarray(pfns, dtype=WIRE_DTYPE).tobytes()


def unpack(raw: bytes, field: str = "pfns_le32") -> npt.NDArray[np.int64]:
    """Decodes a packed PFN list; raises PfnListError if its length is not a multiple of 4."""
    if len(raw) % 4:
        raise PfnListError(f"{field}: length {len(raw)} is not a multiple of 4")
    return np.frombuffer(raw, dtype=WIRE_DTYPE).astype(np.int64)


def mib_to_pages(mib: float) -> int:
    return int(mib * (1 << 20)) // PAGE_SIZE_BYTES


def pages_to_bytes(pages: int) -> int:
    return int(pages) * PAGE_SIZE_BYTES
