from balloon.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetHostRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class NodeState(_message.Message):
    __slots__ = ("node", "total_pages", "free_pages", "mapped_pages", "reserved_pages", "numa_hit_total", "numa_miss_total", "numa_foreign_total")
    NODE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PAGES_FIELD_NUMBER: _ClassVar[int]
    FREE_PAGES_FIELD_NUMBER: _ClassVar[int]
    MAPPED_PAGES_FIELD_NUMBER: _ClassVar[int]
    RESERVED_PAGES_FIELD_NUMBER: _ClassVar[int]
    NUMA_HIT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    NUMA_MISS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    NUMA_FOREIGN_TOTAL_FIELD_NUMBER: _ClassVar[int]
    node: int
    total_pages: int
    free_pages: int
    mapped_pages: int
    reserved_pages: int
    numa_hit_total: int
    numa_miss_total: int
    numa_foreign_total: int
    def __init__(self, node: _Optional[int] = ..., total_pages: _Optional[int] = ..., free_pages: _Optional[int] = ..., mapped_pages: _Optional[int] = ..., reserved_pages: _Optional[int] = ..., numa_hit_total: _Optional[int] = ..., numa_miss_total: _Optional[int] = ..., numa_foreign_total: _Optional[int] = ...) -> None: ...

class SwapState(_message.Message):
    __slots__ = ("capacity_pages", "used_pages", "pswpin_total", "pswpout_total", "bandwidth_bytes_per_s", "failed_total", "latency_s")
    CAPACITY_PAGES_FIELD_NUMBER: _ClassVar[int]
    USED_PAGES_FIELD_NUMBER: _ClassVar[int]
    PSWPIN_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PSWPOUT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BANDWIDTH_BYTES_PER_S_FIELD_NUMBER: _ClassVar[int]
    FAILED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    LATENCY_S_FIELD_NUMBER: _ClassVar[int]
    capacity_pages: int
    used_pages: int
    pswpin_total: int
    pswpout_total: int
    bandwidth_bytes_per_s: float
    failed_total: int
    latency_s: float
    def __init__(self, capacity_pages: _Optional[int] = ..., used_pages: _Optional[int] = ..., pswpin_total: _Optional[int] = ..., pswpout_total: _Optional[int] = ..., bandwidth_bytes_per_s: _Optional[float] = ..., failed_total: _Optional[int] = ..., latency_s: _Optional[float] = ...) -> None: ...

class HostState(_message.Message):
    __slots__ = ("page_size_bytes", "total_pages", "free_pages", "mapped_pages", "reserved_pages", "nodes", "swap", "now_s", "node_distances", "refused_requests_total")
    PAGE_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PAGES_FIELD_NUMBER: _ClassVar[int]
    FREE_PAGES_FIELD_NUMBER: _ClassVar[int]
    MAPPED_PAGES_FIELD_NUMBER: _ClassVar[int]
    RESERVED_PAGES_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    SWAP_FIELD_NUMBER: _ClassVar[int]
    NOW_S_FIELD_NUMBER: _ClassVar[int]
    NODE_DISTANCES_FIELD_NUMBER: _ClassVar[int]
    REFUSED_REQUESTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    page_size_bytes: int
    total_pages: int
    free_pages: int
    mapped_pages: int
    reserved_pages: int
    nodes: _containers.RepeatedCompositeFieldContainer[NodeState]
    swap: SwapState
    now_s: float
    node_distances: _containers.RepeatedScalarFieldContainer[int]
    refused_requests_total: int
    def __init__(self, page_size_bytes: _Optional[int] = ..., total_pages: _Optional[int] = ..., free_pages: _Optional[int] = ..., mapped_pages: _Optional[int] = ..., reserved_pages: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeState, _Mapping]]] = ..., swap: _Optional[_Union[SwapState, _Mapping]] = ..., now_s: _Optional[float] = ..., node_distances: _Optional[_Iterable[int]] = ..., refused_requests_total: _Optional[int] = ...) -> None: ...

class ListVmsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VmState(_message.Message):
    __slots__ = ("vm_id", "home_node", "guest_pages", "target", "balloon_actual_pages", "resident_pages", "host_swapped_pages", "remote_pages", "driver_attached", "accepted_features", "stats", "stats_age_s", "reclaimed_frames_total", "stall_s_total", "pswpin_total", "pswpout_total", "balloon_capable", "acted_generation", "oom_deflated_pages_total", "failed_access_pages_total")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    HOME_NODE_FIELD_NUMBER: _ClassVar[int]
    GUEST_PAGES_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    BALLOON_ACTUAL_PAGES_FIELD_NUMBER: _ClassVar[int]
    RESIDENT_PAGES_FIELD_NUMBER: _ClassVar[int]
    HOST_SWAPPED_PAGES_FIELD_NUMBER: _ClassVar[int]
    REMOTE_PAGES_FIELD_NUMBER: _ClassVar[int]
    DRIVER_ATTACHED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    STATS_AGE_S_FIELD_NUMBER: _ClassVar[int]
    RECLAIMED_FRAMES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    STALL_S_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PSWPIN_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PSWPOUT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BALLOON_CAPABLE_FIELD_NUMBER: _ClassVar[int]
    ACTED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    OOM_DEFLATED_PAGES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FAILED_ACCESS_PAGES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    home_node: int
    guest_pages: int
    target: _types_pb2.BalloonTarget
    balloon_actual_pages: int
    resident_pages: int
    host_swapped_pages: int
    remote_pages: int
    driver_attached: bool
    accepted_features: int
    stats: _types_pb2.GuestStats
    stats_age_s: float
    reclaimed_frames_total: int
    stall_s_total: float
    pswpin_total: int
    pswpout_total: int
    balloon_capable: bool
    acted_generation: int
    oom_deflated_pages_total: int
    failed_access_pages_total: int
    def __init__(self, vm_id: _Optional[str] = ..., home_node: _Optional[int] = ..., guest_pages: _Optional[int] = ..., target: _Optional[_Union[_types_pb2.BalloonTarget, _Mapping]] = ..., balloon_actual_pages: _Optional[int] = ..., resident_pages: _Optional[int] = ..., host_swapped_pages: _Optional[int] = ..., remote_pages: _Optional[int] = ..., driver_attached: _Optional[bool] = ..., accepted_features: _Optional[int] = ..., stats: _Optional[_Union[_types_pb2.GuestStats, _Mapping]] = ..., stats_age_s: _Optional[float] = ..., reclaimed_frames_total: _Optional[int] = ..., stall_s_total: _Optional[float] = ..., pswpin_total: _Optional[int] = ..., pswpout_total: _Optional[int] = ..., balloon_capable: _Optional[bool] = ..., acted_generation: _Optional[int] = ..., oom_deflated_pages_total: _Optional[int] = ..., failed_access_pages_total: _Optional[int] = ...) -> None: ...

class ListVmsReply(_message.Message):
    __slots__ = ("vms",)
    VMS_FIELD_NUMBER: _ClassVar[int]
    vms: _containers.RepeatedCompositeFieldContainer[VmState]
    def __init__(self, vms: _Optional[_Iterable[_Union[VmState, _Mapping]]] = ...) -> None: ...

class SetBalloonTargetRequest(_message.Message):
    __slots__ = ("vm_id", "target_pages", "generation")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_PAGES_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    target_pages: int
    generation: int
    def __init__(self, vm_id: _Optional[str] = ..., target_pages: _Optional[int] = ..., generation: _Optional[int] = ...) -> None: ...

class SetBalloonTargetReply(_message.Message):
    __slots__ = ("target",)
    TARGET_FIELD_NUMBER: _ClassVar[int]
    target: _types_pb2.BalloonTarget
    def __init__(self, target: _Optional[_Union[_types_pb2.BalloonTarget, _Mapping]] = ...) -> None: ...

class GetBuddyInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BuddyZone(_message.Message):
    __slots__ = ("node", "zone", "free_blocks")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    FREE_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    node: int
    zone: str
    free_blocks: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, node: _Optional[int] = ..., zone: _Optional[str] = ..., free_blocks: _Optional[_Iterable[int]] = ...) -> None: ...

class BuddyInfo(_message.Message):
    __slots__ = ("zones", "text")
    ZONES_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    zones: _containers.RepeatedCompositeFieldContainer[BuddyZone]
    text: str
    def __init__(self, zones: _Optional[_Iterable[_Union[BuddyZone, _Mapping]]] = ..., text: _Optional[str] = ...) -> None: ...
