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
    __slots__ = ("node", "total_pages", "free_pages", "mapped_pages", "reserved_pages", "numa_hit_total", "numa_miss_total", "numa_foreign_total", "local_node_total", "other_node_total")
    NODE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PAGES_FIELD_NUMBER: _ClassVar[int]
    FREE_PAGES_FIELD_NUMBER: _ClassVar[int]
    MAPPED_PAGES_FIELD_NUMBER: _ClassVar[int]
    RESERVED_PAGES_FIELD_NUMBER: _ClassVar[int]
    NUMA_HIT_TOTAL_FIELD_NUMBER: _ClassVar[int]
    NUMA_MISS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    NUMA_FOREIGN_TOTAL_FIELD_NUMBER: _ClassVar[int]
    LOCAL_NODE_TOTAL_FIELD_NUMBER: _ClassVar[int]
    OTHER_NODE_TOTAL_FIELD_NUMBER: _ClassVar[int]
    node: int
    total_pages: int
    free_pages: int
    mapped_pages: int
    reserved_pages: int
    numa_hit_total: int
    numa_miss_total: int
    numa_foreign_total: int
    local_node_total: int
    other_node_total: int
    def __init__(self, node: _Optional[int] = ..., total_pages: _Optional[int] = ..., free_pages: _Optional[int] = ..., mapped_pages: _Optional[int] = ..., reserved_pages: _Optional[int] = ..., numa_hit_total: _Optional[int] = ..., numa_miss_total: _Optional[int] = ..., numa_foreign_total: _Optional[int] = ..., local_node_total: _Optional[int] = ..., other_node_total: _Optional[int] = ...) -> None: ...

class CpuState(_message.Message):
    __slots__ = ("cpu", "tlb_entries_used", "tlb_shootdowns_total", "tlb_flushed_entries_total")
    CPU_FIELD_NUMBER: _ClassVar[int]
    TLB_ENTRIES_USED_FIELD_NUMBER: _ClassVar[int]
    TLB_SHOOTDOWNS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TLB_FLUSHED_ENTRIES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    cpu: int
    tlb_entries_used: int
    tlb_shootdowns_total: int
    tlb_flushed_entries_total: int
    def __init__(self, cpu: _Optional[int] = ..., tlb_entries_used: _Optional[int] = ..., tlb_shootdowns_total: _Optional[int] = ..., tlb_flushed_entries_total: _Optional[int] = ...) -> None: ...

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
    __slots__ = ("page_size_bytes", "total_pages", "free_pages", "mapped_pages", "reserved_pages", "nodes", "swap", "now_s", "node_distances", "refused_requests_total", "cpus", "tlb_entries_per_core", "tlb_interrupts_text", "min_free_kbytes")
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
    CPUS_FIELD_NUMBER: _ClassVar[int]
    TLB_ENTRIES_PER_CORE_FIELD_NUMBER: _ClassVar[int]
    TLB_INTERRUPTS_TEXT_FIELD_NUMBER: _ClassVar[int]
    MIN_FREE_KBYTES_FIELD_NUMBER: _ClassVar[int]
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
    cpus: _containers.RepeatedCompositeFieldContainer[CpuState]
    tlb_entries_per_core: int
    tlb_interrupts_text: str
    min_free_kbytes: int
    def __init__(self, page_size_bytes: _Optional[int] = ..., total_pages: _Optional[int] = ..., free_pages: _Optional[int] = ..., mapped_pages: _Optional[int] = ..., reserved_pages: _Optional[int] = ..., nodes: _Optional[_Iterable[_Union[NodeState, _Mapping]]] = ..., swap: _Optional[_Union[SwapState, _Mapping]] = ..., now_s: _Optional[float] = ..., node_distances: _Optional[_Iterable[int]] = ..., refused_requests_total: _Optional[int] = ..., cpus: _Optional[_Iterable[_Union[CpuState, _Mapping]]] = ..., tlb_entries_per_core: _Optional[int] = ..., tlb_interrupts_text: _Optional[str] = ..., min_free_kbytes: _Optional[int] = ...) -> None: ...

class ListVmsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VmState(_message.Message):
    __slots__ = ("vm_id", "home_node", "guest_pages", "target", "balloon_actual_pages", "resident_pages", "host_swapped_pages", "remote_pages", "driver_attached", "accepted_features", "stats", "stats_age_s", "reclaimed_frames_total", "stall_s_total", "pswpin_total", "pswpout_total", "balloon_capable", "acted_generation", "oom_deflated_pages_total", "failed_access_pages_total", "backing", "host_reclaimed_pages", "pinned_ballooned_pages", "remote_share", "avg_access_latency_ns", "relative_throughput", "tlb_shootdowns_total", "tlb_flushed_entries_total", "tlb_expected_flushed_entries", "node_resident_pages", "requested_pending_pages", "requested_taken_pages_total", "requested_unavailable_pages_total")
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
    BACKING_FIELD_NUMBER: _ClassVar[int]
    HOST_RECLAIMED_PAGES_FIELD_NUMBER: _ClassVar[int]
    PINNED_BALLOONED_PAGES_FIELD_NUMBER: _ClassVar[int]
    REMOTE_SHARE_FIELD_NUMBER: _ClassVar[int]
    AVG_ACCESS_LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_THROUGHPUT_FIELD_NUMBER: _ClassVar[int]
    TLB_SHOOTDOWNS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TLB_FLUSHED_ENTRIES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    TLB_EXPECTED_FLUSHED_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NODE_RESIDENT_PAGES_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_PENDING_PAGES_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_TAKEN_PAGES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_UNAVAILABLE_PAGES_TOTAL_FIELD_NUMBER: _ClassVar[int]
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
    backing: str
    host_reclaimed_pages: int
    pinned_ballooned_pages: int
    remote_share: float
    avg_access_latency_ns: float
    relative_throughput: float
    tlb_shootdowns_total: int
    tlb_flushed_entries_total: int
    tlb_expected_flushed_entries: float
    node_resident_pages: _containers.RepeatedScalarFieldContainer[int]
    requested_pending_pages: int
    requested_taken_pages_total: int
    requested_unavailable_pages_total: int
    def __init__(self, vm_id: _Optional[str] = ..., home_node: _Optional[int] = ..., guest_pages: _Optional[int] = ..., target: _Optional[_Union[_types_pb2.BalloonTarget, _Mapping]] = ..., balloon_actual_pages: _Optional[int] = ..., resident_pages: _Optional[int] = ..., host_swapped_pages: _Optional[int] = ..., remote_pages: _Optional[int] = ..., driver_attached: _Optional[bool] = ..., accepted_features: _Optional[int] = ..., stats: _Optional[_Union[_types_pb2.GuestStats, _Mapping]] = ..., stats_age_s: _Optional[float] = ..., reclaimed_frames_total: _Optional[int] = ..., stall_s_total: _Optional[float] = ..., pswpin_total: _Optional[int] = ..., pswpout_total: _Optional[int] = ..., balloon_capable: _Optional[bool] = ..., acted_generation: _Optional[int] = ..., oom_deflated_pages_total: _Optional[int] = ..., failed_access_pages_total: _Optional[int] = ..., backing: _Optional[str] = ..., host_reclaimed_pages: _Optional[int] = ..., pinned_ballooned_pages: _Optional[int] = ..., remote_share: _Optional[float] = ..., avg_access_latency_ns: _Optional[float] = ..., relative_throughput: _Optional[float] = ..., tlb_shootdowns_total: _Optional[int] = ..., tlb_flushed_entries_total: _Optional[int] = ..., tlb_expected_flushed_entries: _Optional[float] = ..., node_resident_pages: _Optional[_Iterable[int]] = ..., requested_pending_pages: _Optional[int] = ..., requested_taken_pages_total: _Optional[int] = ..., requested_unavailable_pages_total: _Optional[int] = ...) -> None: ...

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

class GetZoneInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MigrateTypeFree(_message.Message):
    __slots__ = ("migrate_type", "free_blocks", "pageblocks")
    MIGRATE_TYPE_FIELD_NUMBER: _ClassVar[int]
    FREE_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    PAGEBLOCKS_FIELD_NUMBER: _ClassVar[int]
    migrate_type: str
    free_blocks: _containers.RepeatedScalarFieldContainer[int]
    pageblocks: int
    def __init__(self, migrate_type: _Optional[str] = ..., free_blocks: _Optional[_Iterable[int]] = ..., pageblocks: _Optional[int] = ...) -> None: ...

class ZoneState(_message.Message):
    __slots__ = ("node", "zone", "base_hfn", "total_pages", "free_pages", "min_pages", "low_pages", "high_pages", "free_blocks", "unusable_index_milli", "migrate_types", "managed_pages", "spanned_pages")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    BASE_HFN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_PAGES_FIELD_NUMBER: _ClassVar[int]
    FREE_PAGES_FIELD_NUMBER: _ClassVar[int]
    MIN_PAGES_FIELD_NUMBER: _ClassVar[int]
    LOW_PAGES_FIELD_NUMBER: _ClassVar[int]
    HIGH_PAGES_FIELD_NUMBER: _ClassVar[int]
    FREE_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    UNUSABLE_INDEX_MILLI_FIELD_NUMBER: _ClassVar[int]
    MIGRATE_TYPES_FIELD_NUMBER: _ClassVar[int]
    MANAGED_PAGES_FIELD_NUMBER: _ClassVar[int]
    SPANNED_PAGES_FIELD_NUMBER: _ClassVar[int]
    node: int
    zone: str
    base_hfn: int
    total_pages: int
    free_pages: int
    min_pages: int
    low_pages: int
    high_pages: int
    free_blocks: _containers.RepeatedScalarFieldContainer[int]
    unusable_index_milli: _containers.RepeatedScalarFieldContainer[int]
    migrate_types: _containers.RepeatedCompositeFieldContainer[MigrateTypeFree]
    managed_pages: int
    spanned_pages: int
    def __init__(self, node: _Optional[int] = ..., zone: _Optional[str] = ..., base_hfn: _Optional[int] = ..., total_pages: _Optional[int] = ..., free_pages: _Optional[int] = ..., min_pages: _Optional[int] = ..., low_pages: _Optional[int] = ..., high_pages: _Optional[int] = ..., free_blocks: _Optional[_Iterable[int]] = ..., unusable_index_milli: _Optional[_Iterable[int]] = ..., migrate_types: _Optional[_Iterable[_Union[MigrateTypeFree, _Mapping]]] = ..., managed_pages: _Optional[int] = ..., spanned_pages: _Optional[int] = ...) -> None: ...

class ZoneInfo(_message.Message):
    __slots__ = ("zones", "zoneinfo_text", "pagetypeinfo_text", "unusable_index_text")
    ZONES_FIELD_NUMBER: _ClassVar[int]
    ZONEINFO_TEXT_FIELD_NUMBER: _ClassVar[int]
    PAGETYPEINFO_TEXT_FIELD_NUMBER: _ClassVar[int]
    UNUSABLE_INDEX_TEXT_FIELD_NUMBER: _ClassVar[int]
    zones: _containers.RepeatedCompositeFieldContainer[ZoneState]
    zoneinfo_text: str
    pagetypeinfo_text: str
    unusable_index_text: str
    def __init__(self, zones: _Optional[_Iterable[_Union[ZoneState, _Mapping]]] = ..., zoneinfo_text: _Optional[str] = ..., pagetypeinfo_text: _Optional[str] = ..., unusable_index_text: _Optional[str] = ...) -> None: ...

class FindReclaimBlocksRequest(_message.Message):
    __slots__ = ("max_used_pages", "max_blocks")
    MAX_USED_PAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    max_used_pages: int
    max_blocks: int
    def __init__(self, max_used_pages: _Optional[int] = ..., max_blocks: _Optional[int] = ...) -> None: ...

class FrameOwner(_message.Message):
    __slots__ = ("vm_id", "gpfn", "hfn")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    GPFN_FIELD_NUMBER: _ClassVar[int]
    HFN_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    gpfn: int
    hfn: int
    def __init__(self, vm_id: _Optional[str] = ..., gpfn: _Optional[int] = ..., hfn: _Optional[int] = ...) -> None: ...

class ReclaimBlock(_message.Message):
    __slots__ = ("node", "zone", "first_hfn", "order", "free_pages", "owners")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    FIRST_HFN_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    FREE_PAGES_FIELD_NUMBER: _ClassVar[int]
    OWNERS_FIELD_NUMBER: _ClassVar[int]
    node: int
    zone: str
    first_hfn: int
    order: int
    free_pages: int
    owners: _containers.RepeatedCompositeFieldContainer[FrameOwner]
    def __init__(self, node: _Optional[int] = ..., zone: _Optional[str] = ..., first_hfn: _Optional[int] = ..., order: _Optional[int] = ..., free_pages: _Optional[int] = ..., owners: _Optional[_Iterable[_Union[FrameOwner, _Mapping]]] = ...) -> None: ...

class ReclaimBlocks(_message.Message):
    __slots__ = ("blocks",)
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    blocks: _containers.RepeatedCompositeFieldContainer[ReclaimBlock]
    def __init__(self, blocks: _Optional[_Iterable[_Union[ReclaimBlock, _Mapping]]] = ...) -> None: ...

class RequestBalloonPagesRequest(_message.Message):
    __slots__ = ("vm_id", "gpfns_le32", "reason", "node", "node_pages")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    GPFNS_LE32_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    NODE_PAGES_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    gpfns_le32: bytes
    reason: str
    node: int
    node_pages: int
    def __init__(self, vm_id: _Optional[str] = ..., gpfns_le32: _Optional[bytes] = ..., reason: _Optional[str] = ..., node: _Optional[int] = ..., node_pages: _Optional[int] = ...) -> None: ...

class RequestBalloonPagesReply(_message.Message):
    __slots__ = ("request_id", "queued_pages", "skipped_pages", "target")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUED_PAGES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_PAGES_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    queued_pages: int
    skipped_pages: int
    target: _types_pb2.BalloonTarget
    def __init__(self, request_id: _Optional[int] = ..., queued_pages: _Optional[int] = ..., skipped_pages: _Optional[int] = ..., target: _Optional[_Union[_types_pb2.BalloonTarget, _Mapping]] = ...) -> None: ...
