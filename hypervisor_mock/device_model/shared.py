"""The memory a guest shares with its device model: one mmap'd file per VM.

The guest places its virtqueues and buffers in this file and the device
model maps the same file, so both see one set of bytes, as a guest's RAM is
mapped into QEMU. Offsets in registers and descriptors are byte offsets into
it. Either side may create the file first; it is grown, never shrunk.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt


def open_shared_window(path: Path, size_bytes: int) -> npt.NDArray[np.uint8]:
    """Maps `path` read-write and shared, first growing it to `size_bytes` if smaller."""
    if size_bytes <= 0:
        raise ValueError(f"shared window: {size_bytes} bytes is not a size")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_size < size_bytes:
            os.ftruncate(fd, size_bytes)
    finally:
        os.close(fd)
    window: npt.NDArray[np.uint8] = np.memmap(path, dtype=np.uint8, mode="r+")
    return window
