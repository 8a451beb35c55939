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
    __slots__ = ("vm_id", "balloon_capable", "driver_attached", "stats_known", "guest_bytes", "balloon_target_bytes", "balloon_actual_bytes", "usable_bytes", "floor_bytes", "working_set_bytes", "guest_swap_in_pages_per_s", "guest_swap_out_pages_per_s", "manual", "last_reason", "target_generation", "host_swapped_bytes", "stall_s_total", "swap_verdict", "escalation", "reclaim_hold_bytes")
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
    SWAP_VERDICT_FIELD_NUMBER: _ClassVar[int]
    ESCALATION_FIELD_NUMBER: _ClassVar[int]
    RECLAIM_HOLD_BYTES_FIELD_NUMBER: _ClassVar[int]
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
    swap_verdict: str
    escalation: str
    reclaim_hold_bytes: int
    def __init__(self, vm_id: _Optional[str] = ..., balloon_capable: _Optional[bool] = ..., driver_attached: _Optional[bool] = ..., stats_known: _Optional[bool] = ..., guest_bytes: _Optional[int] = ..., balloon_target_bytes: _Optional[int] = ..., balloon_actual_bytes: _Optional[int] = ..., usable_bytes: _Optional[int] = ..., floor_bytes: _Optional[int] = ..., working_set_bytes: _Optional[int] = ..., guest_swap_in_pages_per_s: _Optional[float] = ..., guest_swap_out_pages_per_s: _Optional[float] = ..., manual: _Optional[bool] = ..., last_reason: _Optional[str] = ..., target_generation: _Optional[int] = ..., host_swapped_bytes: _Optional[int] = ..., stall_s_total: _Optional[float] = ..., swap_verdict: _Optional[str] = ..., escalation: _Optional[str] = ..., reclaim_hold_bytes: _Optional[int] = ...) -> None: ...

class AgentStatus(_message.Message):
    __slots__ = ("host", "vms", "overcommit_ratio", "target_ratio", "free_threshold_fraction", "decisions_total", "now_s", "host_reachable", "max_overcommit_ratio", "effective_target_ratio", "storm_swap_pages_per_s", "storm_budget_pages_per_s", "migration")
    HOST_FIELD_NUMBER: _ClassVar[int]
    VMS_FIELD_NUMBER: _ClassVar[int]
    OVERCOMMIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    TARGET_RATIO_FIELD_NUMBER: _ClassVar[int]
    FREE_THRESHOLD_FRACTION_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    NOW_S_FIELD_NUMBER: _ClassVar[int]
    HOST_REACHABLE_FIELD_NUMBER: _ClassVar[int]
    MAX_OVERCOMMIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TARGET_RATIO_FIELD_NUMBER: _ClassVar[int]
    STORM_SWAP_PAGES_PER_S_FIELD_NUMBER: _ClassVar[int]
    STORM_BUDGET_PAGES_PER_S_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_FIELD_NUMBER: _ClassVar[int]
    host: HostSummary
    vms: _containers.RepeatedCompositeFieldContainer[VmStatus]
    overcommit_ratio: float
    target_ratio: float
    free_threshold_fraction: float
    decisions_total: int
    now_s: float
    host_reachable: bool
    max_overcommit_ratio: float
    effective_target_ratio: float
    storm_swap_pages_per_s: float
    storm_budget_pages_per_s: float
    migration: MigrationRequest
    def __init__(self, host: _Optional[_Union[HostSummary, _Mapping]] = ..., vms: _Optional[_Iterable[_Union[VmStatus, _Mapping]]] = ..., overcommit_ratio: _Optional[float] = ..., target_ratio: _Optional[float] = ..., free_threshold_fraction: _Optional[float] = ..., decisions_total: _Optional[int] = ..., now_s: _Optional[float] = ..., host_reachable: _Optional[bool] = ..., max_overcommit_ratio: _Optional[float] = ..., effective_target_ratio: _Optional[float] = ..., storm_swap_pages_per_s: _Optional[float] = ..., storm_budget_pages_per_s: _Optional[float] = ..., migration: _Optional[_Union[MigrationRequest, _Mapping]] = ...) -> None: ...

class MigrationRequest(_message.Message):
    __slots__ = ("vm_id", "reason", "explanation", "shortfall_bytes", "frees_bytes", "cost", "since_s")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    SHORTFALL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREES_BYTES_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    SINCE_S_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    reason: str
    explanation: str
    shortfall_bytes: int
    frees_bytes: int
    cost: float
    since_s: float
    def __init__(self, vm_id: _Optional[str] = ..., reason: _Optional[str] = ..., explanation: _Optional[str] = ..., shortfall_bytes: _Optional[int] = ..., frees_bytes: _Optional[int] = ..., cost: _Optional[float] = ..., since_s: _Optional[float] = ...) -> None: ...

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

class GetRmaxRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RmaxVm(_message.Message):
    __slots__ = ("vm_id", "guest_bytes", "working_set_bytes", "swap_pages_per_s_per_gib", "deficit_now_bytes", "swap_now_pages_per_s", "deficit_at_max_bytes", "swap_at_max_pages_per_s", "overhead_bytes")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    GUEST_BYTES_FIELD_NUMBER: _ClassVar[int]
    WORKING_SET_BYTES_FIELD_NUMBER: _ClassVar[int]
    SWAP_PAGES_PER_S_PER_GIB_FIELD_NUMBER: _ClassVar[int]
    DEFICIT_NOW_BYTES_FIELD_NUMBER: _ClassVar[int]
    SWAP_NOW_PAGES_PER_S_FIELD_NUMBER: _ClassVar[int]
    DEFICIT_AT_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    SWAP_AT_MAX_PAGES_PER_S_FIELD_NUMBER: _ClassVar[int]
    OVERHEAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    guest_bytes: int
    working_set_bytes: int
    swap_pages_per_s_per_gib: float
    deficit_now_bytes: float
    swap_now_pages_per_s: float
    deficit_at_max_bytes: float
    swap_at_max_pages_per_s: float
    overhead_bytes: int
    def __init__(self, vm_id: _Optional[str] = ..., guest_bytes: _Optional[int] = ..., working_set_bytes: _Optional[int] = ..., swap_pages_per_s_per_gib: _Optional[float] = ..., deficit_now_bytes: _Optional[float] = ..., swap_now_pages_per_s: _Optional[float] = ..., deficit_at_max_bytes: _Optional[float] = ..., swap_at_max_pages_per_s: _Optional[float] = ..., overhead_bytes: _Optional[int] = ...) -> None: ...

class RmaxReport(_message.Message):
    __slots__ = ("max_overcommit_ratio", "overcommit_ratio", "target_ratio", "effective_target_ratio", "swap_bandwidth_pages_per_s", "safe_bandwidth_fraction", "budget_pages_per_s", "swap_now_pages_per_s", "vms", "explanation")
    MAX_OVERCOMMIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    OVERCOMMIT_RATIO_FIELD_NUMBER: _ClassVar[int]
    TARGET_RATIO_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_TARGET_RATIO_FIELD_NUMBER: _ClassVar[int]
    SWAP_BANDWIDTH_PAGES_PER_S_FIELD_NUMBER: _ClassVar[int]
    SAFE_BANDWIDTH_FRACTION_FIELD_NUMBER: _ClassVar[int]
    BUDGET_PAGES_PER_S_FIELD_NUMBER: _ClassVar[int]
    SWAP_NOW_PAGES_PER_S_FIELD_NUMBER: _ClassVar[int]
    VMS_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    max_overcommit_ratio: float
    overcommit_ratio: float
    target_ratio: float
    effective_target_ratio: float
    swap_bandwidth_pages_per_s: float
    safe_bandwidth_fraction: float
    budget_pages_per_s: float
    swap_now_pages_per_s: float
    vms: _containers.RepeatedCompositeFieldContainer[RmaxVm]
    explanation: str
    def __init__(self, max_overcommit_ratio: _Optional[float] = ..., overcommit_ratio: _Optional[float] = ..., target_ratio: _Optional[float] = ..., effective_target_ratio: _Optional[float] = ..., swap_bandwidth_pages_per_s: _Optional[float] = ..., safe_bandwidth_fraction: _Optional[float] = ..., budget_pages_per_s: _Optional[float] = ..., swap_now_pages_per_s: _Optional[float] = ..., vms: _Optional[_Iterable[_Union[RmaxVm, _Mapping]]] = ..., explanation: _Optional[str] = ...) -> None: ...

class ReclaimRequest(_message.Message):
    __slots__ = ("pages", "wait_s")
    PAGES_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    pages: int
    wait_s: float
    def __init__(self, pages: _Optional[int] = ..., wait_s: _Optional[float] = ...) -> None: ...

class ReclaimStep(_message.Message):
    __slots__ = ("vm_id", "planned_pages", "batches", "cost", "target_pages", "reclaimed_pages", "applied", "detail")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    PLANNED_PAGES_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    TARGET_PAGES_FIELD_NUMBER: _ClassVar[int]
    RECLAIMED_PAGES_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    planned_pages: int
    batches: int
    cost: float
    target_pages: int
    reclaimed_pages: int
    applied: bool
    detail: str
    def __init__(self, vm_id: _Optional[str] = ..., planned_pages: _Optional[int] = ..., batches: _Optional[int] = ..., cost: _Optional[float] = ..., target_pages: _Optional[int] = ..., reclaimed_pages: _Optional[int] = ..., applied: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class ReclaimReply(_message.Message):
    __slots__ = ("requested_pages", "planned_pages", "reclaimed_pages", "max_reclaimable_pages", "total_cost", "steps", "host_free_delta_pages", "waited_s", "batch_pages")
    REQUESTED_PAGES_FIELD_NUMBER: _ClassVar[int]
    PLANNED_PAGES_FIELD_NUMBER: _ClassVar[int]
    RECLAIMED_PAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_RECLAIMABLE_PAGES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_COST_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    HOST_FREE_DELTA_PAGES_FIELD_NUMBER: _ClassVar[int]
    WAITED_S_FIELD_NUMBER: _ClassVar[int]
    BATCH_PAGES_FIELD_NUMBER: _ClassVar[int]
    requested_pages: int
    planned_pages: int
    reclaimed_pages: int
    max_reclaimable_pages: int
    total_cost: float
    steps: _containers.RepeatedCompositeFieldContainer[ReclaimStep]
    host_free_delta_pages: int
    waited_s: float
    batch_pages: int
    def __init__(self, requested_pages: _Optional[int] = ..., planned_pages: _Optional[int] = ..., reclaimed_pages: _Optional[int] = ..., max_reclaimable_pages: _Optional[int] = ..., total_cost: _Optional[float] = ..., steps: _Optional[_Iterable[_Union[ReclaimStep, _Mapping]]] = ..., host_free_delta_pages: _Optional[int] = ..., waited_s: _Optional[float] = ..., batch_pages: _Optional[int] = ...) -> None: ...

class DiagnoseRequest(_message.Message):
    __slots__ = ("vm_id",)
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    def __init__(self, vm_id: _Optional[str] = ...) -> None: ...

class DiagnosisEvidence(_message.Message):
    __slots__ = ("signal", "value", "threshold", "high")
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    signal: str
    value: float
    threshold: float
    high: bool
    def __init__(self, signal: _Optional[str] = ..., value: _Optional[float] = ..., threshold: _Optional[float] = ..., high: _Optional[bool] = ...) -> None: ...

class VmDiagnosis(_message.Message):
    __slots__ = ("vm_id", "verdict", "summary", "evidence")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    verdict: str
    summary: str
    evidence: _containers.RepeatedCompositeFieldContainer[DiagnosisEvidence]
    def __init__(self, vm_id: _Optional[str] = ..., verdict: _Optional[str] = ..., summary: _Optional[str] = ..., evidence: _Optional[_Iterable[_Union[DiagnosisEvidence, _Mapping]]] = ...) -> None: ...

class DiagnoseReply(_message.Message):
    __slots__ = ("vms",)
    VMS_FIELD_NUMBER: _ClassVar[int]
    vms: _containers.RepeatedCompositeFieldContainer[VmDiagnosis]
    def __init__(self, vms: _Optional[_Iterable[_Union[VmDiagnosis, _Mapping]]] = ...) -> None: ...

class HugePagesRequest(_message.Message):
    __slots__ = ("vm_id",)
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    def __init__(self, vm_id: _Optional[str] = ...) -> None: ...

class HugePagePoint(_message.Message):
    __slots__ = ("fraction", "tenant_gain_per_s", "provider_loss_per_s")
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    TENANT_GAIN_PER_S_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_LOSS_PER_S_FIELD_NUMBER: _ClassVar[int]
    fraction: float
    tenant_gain_per_s: float
    provider_loss_per_s: float
    def __init__(self, fraction: _Optional[float] = ..., tenant_gain_per_s: _Optional[float] = ..., provider_loss_per_s: _Optional[float] = ...) -> None: ...

class HugePagesReply(_message.Message):
    __slots__ = ("vm_id", "tlb_miss_cost_per_s", "reclaim_flex_value_per_s", "balanced_fraction", "price_per_fraction_per_s", "price_per_gib_per_s", "net_gain_per_s", "current_fraction", "current_net_gain_per_s", "curve", "backing")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    TLB_MISS_COST_PER_S_FIELD_NUMBER: _ClassVar[int]
    RECLAIM_FLEX_VALUE_PER_S_FIELD_NUMBER: _ClassVar[int]
    BALANCED_FRACTION_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_FRACTION_PER_S_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_GIB_PER_S_FIELD_NUMBER: _ClassVar[int]
    NET_GAIN_PER_S_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_NET_GAIN_PER_S_FIELD_NUMBER: _ClassVar[int]
    CURVE_FIELD_NUMBER: _ClassVar[int]
    BACKING_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    tlb_miss_cost_per_s: float
    reclaim_flex_value_per_s: float
    balanced_fraction: float
    price_per_fraction_per_s: float
    price_per_gib_per_s: float
    net_gain_per_s: float
    current_fraction: float
    current_net_gain_per_s: float
    curve: _containers.RepeatedCompositeFieldContainer[HugePagePoint]
    backing: str
    def __init__(self, vm_id: _Optional[str] = ..., tlb_miss_cost_per_s: _Optional[float] = ..., reclaim_flex_value_per_s: _Optional[float] = ..., balanced_fraction: _Optional[float] = ..., price_per_fraction_per_s: _Optional[float] = ..., price_per_gib_per_s: _Optional[float] = ..., net_gain_per_s: _Optional[float] = ..., current_fraction: _Optional[float] = ..., current_net_gain_per_s: _Optional[float] = ..., curve: _Optional[_Iterable[_Union[HugePagePoint, _Mapping]]] = ..., backing: _Optional[str] = ...) -> None: ...

class DefragmentRequest(_message.Message):
    __slots__ = ("wanted_blocks", "wait_s")
    WANTED_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    wanted_blocks: int
    wait_s: float
    def __init__(self, wanted_blocks: _Optional[int] = ..., wait_s: _Optional[float] = ...) -> None: ...

class DefragmentVm(_message.Message):
    __slots__ = ("vm_id", "asked_pages", "queued_pages")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    ASKED_PAGES_FIELD_NUMBER: _ClassVar[int]
    QUEUED_PAGES_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    asked_pages: int
    queued_pages: int
    def __init__(self, vm_id: _Optional[str] = ..., asked_pages: _Optional[int] = ..., queued_pages: _Optional[int] = ...) -> None: ...

class DefragmentReply(_message.Message):
    __slots__ = ("wanted_blocks", "candidate_blocks", "block_first_hfns", "asked_pages", "expected_blocks", "order9_free_before", "order9_free_after", "blocks_formed", "vms", "waited_s", "explanation")
    WANTED_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_FIRST_HFNS_FIELD_NUMBER: _ClassVar[int]
    ASKED_PAGES_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    ORDER9_FREE_BEFORE_FIELD_NUMBER: _ClassVar[int]
    ORDER9_FREE_AFTER_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FORMED_FIELD_NUMBER: _ClassVar[int]
    VMS_FIELD_NUMBER: _ClassVar[int]
    WAITED_S_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    wanted_blocks: int
    candidate_blocks: int
    block_first_hfns: _containers.RepeatedScalarFieldContainer[int]
    asked_pages: int
    expected_blocks: int
    order9_free_before: int
    order9_free_after: int
    blocks_formed: int
    vms: _containers.RepeatedCompositeFieldContainer[DefragmentVm]
    waited_s: float
    explanation: str
    def __init__(self, wanted_blocks: _Optional[int] = ..., candidate_blocks: _Optional[int] = ..., block_first_hfns: _Optional[_Iterable[int]] = ..., asked_pages: _Optional[int] = ..., expected_blocks: _Optional[int] = ..., order9_free_before: _Optional[int] = ..., order9_free_after: _Optional[int] = ..., blocks_formed: _Optional[int] = ..., vms: _Optional[_Iterable[_Union[DefragmentVm, _Mapping]]] = ..., waited_s: _Optional[float] = ..., explanation: _Optional[str] = ...) -> None: ...
