from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class StatTag(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STAT_TAG_SWAP_IN: _ClassVar[StatTag]
    STAT_TAG_SWAP_OUT: _ClassVar[StatTag]
    STAT_TAG_MAJFLT: _ClassVar[StatTag]
    STAT_TAG_MINFLT: _ClassVar[StatTag]
    STAT_TAG_MEMFREE: _ClassVar[StatTag]
    STAT_TAG_MEMTOT: _ClassVar[StatTag]
    STAT_TAG_AVAIL: _ClassVar[StatTag]
    STAT_TAG_CACHES: _ClassVar[StatTag]
    STAT_TAG_HTLB_PGALLOC: _ClassVar[StatTag]
    STAT_TAG_HTLB_PGFAIL: _ClassVar[StatTag]
    STAT_TAG_OOM_KILL: _ClassVar[StatTag]
    STAT_TAG_ALLOC_STALL: _ClassVar[StatTag]
    STAT_TAG_ASYNC_SCAN: _ClassVar[StatTag]
    STAT_TAG_DIRECT_SCAN: _ClassVar[StatTag]
    STAT_TAG_ASYNC_RECLAIM: _ClassVar[StatTag]
    STAT_TAG_DIRECT_RECLAIM: _ClassVar[StatTag]

class FeatureBit(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FEATURE_BIT_MUST_TELL_HOST: _ClassVar[FeatureBit]
    FEATURE_BIT_STATS_VQ: _ClassVar[FeatureBit]
    FEATURE_BIT_DEFLATE_ON_OOM: _ClassVar[FeatureBit]
    FEATURE_BIT_FREE_PAGE_HINT: _ClassVar[FeatureBit]
    FEATURE_BIT_PAGE_POISON: _ClassVar[FeatureBit]
    FEATURE_BIT_PAGE_REPORTING: _ClassVar[FeatureBit]
STAT_TAG_SWAP_IN: StatTag
STAT_TAG_SWAP_OUT: StatTag
STAT_TAG_MAJFLT: StatTag
STAT_TAG_MINFLT: StatTag
STAT_TAG_MEMFREE: StatTag
STAT_TAG_MEMTOT: StatTag
STAT_TAG_AVAIL: StatTag
STAT_TAG_CACHES: StatTag
STAT_TAG_HTLB_PGALLOC: StatTag
STAT_TAG_HTLB_PGFAIL: StatTag
STAT_TAG_OOM_KILL: StatTag
STAT_TAG_ALLOC_STALL: StatTag
STAT_TAG_ASYNC_SCAN: StatTag
STAT_TAG_DIRECT_SCAN: StatTag
STAT_TAG_ASYNC_RECLAIM: StatTag
STAT_TAG_DIRECT_RECLAIM: StatTag
FEATURE_BIT_MUST_TELL_HOST: FeatureBit
FEATURE_BIT_STATS_VQ: FeatureBit
FEATURE_BIT_DEFLATE_ON_OOM: FeatureBit
FEATURE_BIT_FREE_PAGE_HINT: FeatureBit
FEATURE_BIT_PAGE_POISON: FeatureBit
FEATURE_BIT_PAGE_REPORTING: FeatureBit

class GuestStats(_message.Message):
    __slots__ = ("swap_in_pages", "swap_out_pages", "major_faults_total", "minor_faults_total", "free_bytes", "total_bytes", "available_bytes", "caches_bytes", "hugetlb_allocations_total", "hugetlb_failures_total", "oom_kills_total", "alloc_stalls_total", "async_scans_pages", "direct_scans_pages", "async_reclaims_pages", "direct_reclaims_pages", "working_set_bytes", "sampled_at_s", "hinted_skips_pages", "pointless_evictions_pages")
    SWAP_IN_PAGES_FIELD_NUMBER: _ClassVar[int]
    SWAP_OUT_PAGES_FIELD_NUMBER: _ClassVar[int]
    MAJOR_FAULTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    MINOR_FAULTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHES_BYTES_FIELD_NUMBER: _ClassVar[int]
    HUGETLB_ALLOCATIONS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    HUGETLB_FAILURES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    OOM_KILLS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ALLOC_STALLS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ASYNC_SCANS_PAGES_FIELD_NUMBER: _ClassVar[int]
    DIRECT_SCANS_PAGES_FIELD_NUMBER: _ClassVar[int]
    ASYNC_RECLAIMS_PAGES_FIELD_NUMBER: _ClassVar[int]
    DIRECT_RECLAIMS_PAGES_FIELD_NUMBER: _ClassVar[int]
    WORKING_SET_BYTES_FIELD_NUMBER: _ClassVar[int]
    SAMPLED_AT_S_FIELD_NUMBER: _ClassVar[int]
    HINTED_SKIPS_PAGES_FIELD_NUMBER: _ClassVar[int]
    POINTLESS_EVICTIONS_PAGES_FIELD_NUMBER: _ClassVar[int]
    swap_in_pages: int
    swap_out_pages: int
    major_faults_total: int
    minor_faults_total: int
    free_bytes: int
    total_bytes: int
    available_bytes: int
    caches_bytes: int
    hugetlb_allocations_total: int
    hugetlb_failures_total: int
    oom_kills_total: int
    alloc_stalls_total: int
    async_scans_pages: int
    direct_scans_pages: int
    async_reclaims_pages: int
    direct_reclaims_pages: int
    working_set_bytes: int
    sampled_at_s: float
    hinted_skips_pages: int
    pointless_evictions_pages: int
    def __init__(self, swap_in_pages: _Optional[int] = ..., swap_out_pages: _Optional[int] = ..., major_faults_total: _Optional[int] = ..., minor_faults_total: _Optional[int] = ..., free_bytes: _Optional[int] = ..., total_bytes: _Optional[int] = ..., available_bytes: _Optional[int] = ..., caches_bytes: _Optional[int] = ..., hugetlb_allocations_total: _Optional[int] = ..., hugetlb_failures_total: _Optional[int] = ..., oom_kills_total: _Optional[int] = ..., alloc_stalls_total: _Optional[int] = ..., async_scans_pages: _Optional[int] = ..., direct_scans_pages: _Optional[int] = ..., async_reclaims_pages: _Optional[int] = ..., direct_reclaims_pages: _Optional[int] = ..., working_set_bytes: _Optional[int] = ..., sampled_at_s: _Optional[float] = ..., hinted_skips_pages: _Optional[int] = ..., pointless_evictions_pages: _Optional[int] = ...) -> None: ...

class BalloonTarget(_message.Message):
    __slots__ = ("target_pages", "generation", "requested_pfns_le32", "request_id", "hint_pfns_le32", "free_page_hint_cmd_id")
    TARGET_PAGES_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_PFNS_LE32_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    HINT_PFNS_LE32_FIELD_NUMBER: _ClassVar[int]
    FREE_PAGE_HINT_CMD_ID_FIELD_NUMBER: _ClassVar[int]
    target_pages: int
    generation: int
    requested_pfns_le32: bytes
    request_id: int
    hint_pfns_le32: bytes
    free_page_hint_cmd_id: int
    def __init__(self, target_pages: _Optional[int] = ..., generation: _Optional[int] = ..., requested_pfns_le32: _Optional[bytes] = ..., request_id: _Optional[int] = ..., hint_pfns_le32: _Optional[bytes] = ..., free_page_hint_cmd_id: _Optional[int] = ...) -> None: ...
