"""PFN batches on the wire: packed little-endian bytes against `repeated uint64`.

The balloon protocol carries PFN lists as a packed `bytes` field. This
measures, in one run, encoding and decoding 1 GiB worth of PFNs (262144 pages
in batches of 256) both ways, and prints the ratio. The baseline is a
`repeated uint64` field filled from a Python list, the obvious alternative.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from balloon.v1 import hypercall_pb2
from balloon_common.pfns import MAX_BATCH_PFNS, pack, unpack

PAGES = 262144
REPEATS = 3


def _repeated_message_class() -> Any:
    """A throwaway message type with `repeated uint64 pfns = 1`, for the baseline."""
    file = descriptor_pb2.FileDescriptorProto(
        name="bench_wire.proto", package="bench", syntax="proto3"
    )
    msg = file.message_type.add(name="RepeatedPfns")
    msg.field.add(
        name="pfns",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.RepeatedPfns"))


def _best_of(fn: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    rng = np.random.default_rng(1)
    pfns = rng.permutation(PAGES * 4)[:PAGES].astype(np.int64)
    batches = [pfns[i : i + MAX_BATCH_PFNS] for i in range(0, PAGES, MAX_BATCH_PFNS)]
    repeated = _repeated_message_class()

    def packed_round_trip() -> None:
        for b in batches:
            wire = hypercall_pb2.BalloonPages(pfns_le32=pack(b)).SerializeToString()
            unpack(hypercall_pb2.BalloonPages.FromString(wire).pfns_le32)

    def repeated_round_trip() -> None:
        for b in batches:
            wire = repeated(pfns=b.tolist()).SerializeToString()
            np.asarray(repeated.FromString(wire).pfns, dtype=np.int64)

    packed_s = _best_of(packed_round_trip)
    repeated_s = _best_of(repeated_round_trip)
    print(f"wire: encode+decode 1 GiB of PFNs in {len(batches)} batches of {MAX_BATCH_PFNS}")
    print(f"  packed le32 bytes : {packed_s * 1e3:8.1f} ms")
    print(f"  repeated uint64   : {repeated_s * 1e3:8.1f} ms  (baseline)")
    print(f"  ratio packed/repeated = {packed_s / repeated_s:.3f}")


if __name__ == "__main__":
    main()
