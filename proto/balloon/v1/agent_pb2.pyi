from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HostSummary(_message.Message):
    __slots__ = ("total_bytes", "free_bytes", "reserve_bytes", "node_free_bytes", "node_total_bytes", "host_swap_used_bytes", "host_swap_in_pages_per_s", "host_swap_out_pages_per_s")
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    RESERVE_BYTES_FIELD_NUMBER: _ClassVar[int]
    NODE_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    NODE_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    HOST_SWAP_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    HOST_SWAP_IN_PAGES_PER_S_FIELD_NUMBER: _ClassVar[int]
    HOST_SWAP_OUT_PAGES_PER_S_FIELD_NUMBER: _ClassVar[int]
    total_bytes: int
    free_bytes: int
    reserve_bytes: int
    node_free_bytes: _containers.RepeatedScalarFieldContainer[int]
    node_total_bytes: _containers.RepeatedScalarFieldContainer[int]
    host_swap_used_bytes: int
    host_swap_in_pages_per_s: float
    host_swap_out_pages_per_s: float
    def __init__(self, total_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., reserve_bytes: _Optional[int] = ..., node_free_bytes: _Optional[_Iterable[int]] = ..., node_total_bytes: _Optional[_Iterable[int]] = ..., host_swap_used_bytes: _Optional[int] = ..., host_swap_in_pages_per_s: _Optional[float] = ..., host_swap_out_pages_per_s: _Optional[float] = ...) -> None: ...

class VmStatus(_message.Message):
    __slots__ = ("vm_id", "balloon_capable", "driver_attached", "stats_known", "guest_bytes", "balloon_target_bytes", "balloon_actual_bytes", "usable_bytes", "floor_bytes", "working_set_bytes", "guest_swap_in_pages_per_s", "guest_swap_out_pages_per_s", "manual", "last_reason", "target_generation", "host_swapped_bytes", "stall_s_total")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    BALLOON_CAPABLE_FIELD_NUMBER: _ClassVar[int]
    DRIVER_ATTACHED_FIELD_NUMBER: _ClassVar[int]
    STATS_KNOWN_FIELD_NUMBER: _ClassVar[int]
    GUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    BALLOON_TARGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    BALLOON_ACTUAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    USABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FLOOR_BYTES_FIELD_NUMBER: _ClassVar[int]
    WORKING_SET_BYTES_FIELD_NUMBER: _ClassVar[int]
    GUEST_SWAP_IN_PAGES_PER_S_FIELD_NUMBER: _ClassVar[int]
    GUEST_SWAP_OUT_PAGES_PER_S_FIELD_NUMBER: _ClassVar[int]
    MANUAL_FIELD_NUMBER: _ClassVar[int]
    LAST_REASON_FIELD_NUMBER: _ClassVar[int]
    TARGET_GENERATION_FIELD_NUMBER: _ClassVar[int]
    HOST_SWAPPED_BYTES_FIELD_NUMBER: _ClassVar[int]
    STALL_S_TOTAL_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    balloon_capable: bool
    driver_attached: bool
    stats_known: bool
    guest_bytes: int
    balloon_target_bytes: int
    balloon_actual_bytes: int
    usable_bytes: int
    floor_bytes: int
    working_set_bytes: int
    guest_swap_in_pages_per_s: float
    guest_swap_out_pages_per_s: float
    manual: bool
    last_reason: str
    target_generation: int
    host_swapped_bytes: int
    stall_s_total: float
    def __init__(self, vm_id: _Optional[str] = ..., balloon_capable: _Optional[bool] = ..., driver_attached: _Optional[bool] = ..., stats_known: _Optional[bool] = ..., guest_bytes: _Optional[int] = ..., balloon_target_bytes: _Optional[int] = ..., balloon_actual_bytes: _Optional[int] = ..., usable_bytes: _Optional[int] = ..., floor_bytes: _Optional[int] = ..., working_set_bytes: _Optional[int] = ..., guest_swap_in_pages_per_s: _Optional[float] = ..., guest_swap_out_pages_per_s: _Optional[float] = ..., manual: _Optional[bool] = ..., last_reason: _Optional[str] = ..., target_generation: _Optional[int] = ..., host_swapped_bytes: _Optional[int] = ..., stall_s_total: _Optional[float] = ...) -> None: ...

class AgentStatus(_message.Message):
    __slots__ = ("host", "vms", "overcommit_ratio", "target_ratio", "free_threshold_fraction", "decisions_total", "now_s", "host_reachable")
    HOST_FIELD_NUMBER: _ClassVar[int]
    VMS_FIELD_NUMBER: _ClassVar[int]
    OVERCOMMIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    TARGET_RATIO_FIELD_NUMBER: _ClassVar[int]
    FREE_THRESHOLD_FRACTION_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    NOW_S_FIELD_NUMBER: _ClassVar[int]
    HOST_REACHABLE_FIELD_NUMBER: _ClassVar[int]
    host: HostSummary
    vms: _containers.RepeatedCompositeFieldContainer[VmStatus]
    overcommit_ratio: float
    target_ratio: float
    free_threshold_fraction: float
    decisions_total: int
    now_s: float
    host_reachable: bool
    def __init__(self, host: _Optional[_Union[HostSummary, _Mapping]] = ..., vms: _Optional[_Iterable[_Union[VmStatus, _Mapping]]] = ..., overcommit_ratio: _Optional[float] = ..., target_ratio: _Optional[float] = ..., free_threshold_fraction: _Optional[float] = ..., decisions_total: _Optional[int] = ..., now_s: _Optional[float] = ..., host_reachable: _Optional[bool] = ...) -> None: ...

class AgentListVmsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentListVmsReply(_message.Message):
    __slots__ = ("vms",)
    VMS_FIELD_NUMBER: _ClassVar[int]
    vms: _containers.RepeatedCompositeFieldContainer[VmStatus]
    def __init__(self, vms: _Optional[_Iterable[_Union[VmStatus, _Mapping]]] = ...) -> None: ...

class SetTargetRequest(_message.Message):
    __slots__ = ("vm_id", "balloon_mib", "guest_mib", "auto")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    BALLOON_MIB_FIELD_NUMBER: _ClassVar[int]
    GUEST_MIB_FIELD_NUMBER: _ClassVar[int]
    AUTO_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    balloon_mib: int
    guest_mib: int
    auto: bool
    def __init__(self, vm_id: _Optional[str] = ..., balloon_mib: _Optional[int] = ..., guest_mib: _Optional[int] = ..., auto: _Optional[bool] = ...) -> None: ...

class SetTargetReply(_message.Message):
    __slots__ = ("vm",)
    VM_FIELD_NUMBER: _ClassVar[int]
    vm: VmStatus
    def __init__(self, vm: _Optional[_Union[VmStatus, _Mapping]] = ...) -> None: ...
