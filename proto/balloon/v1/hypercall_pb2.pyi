from balloon.v1 import types_pb2 as _types_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AttachRequest(_message.Message):
    __slots__ = ("offered_features", "driver_version", "poison_val")
    OFFERED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    DRIVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    POISON_VAL_FIELD_NUMBER: _ClassVar[int]
    offered_features: int
    driver_version: str
    poison_val: int
    def __init__(self, offered_features: _Optional[int] = ..., driver_version: _Optional[str] = ..., poison_val: _Optional[int] = ...) -> None: ...

class AttachReply(_message.Message):
    __slots__ = ("vm_id", "accepted_features", "guest_pages", "page_size_bytes", "max_batch_pfns", "target", "actual_pages", "ballooned_pfns_le32", "balloon_stream", "poison_val")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    GUEST_PAGES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_PFNS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_PAGES_FIELD_NUMBER: _ClassVar[int]
    BALLOONED_PFNS_LE32_FIELD_NUMBER: _ClassVar[int]
    BALLOON_STREAM_FIELD_NUMBER: _ClassVar[int]
    POISON_VAL_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    accepted_features: int
    guest_pages: int
    page_size_bytes: int
    max_batch_pfns: int
    target: _types_pb2.BalloonTarget
    actual_pages: int
    ballooned_pfns_le32: bytes
    balloon_stream: bool
    poison_val: int
    def __init__(self, vm_id: _Optional[str] = ..., accepted_features: _Optional[int] = ..., guest_pages: _Optional[int] = ..., page_size_bytes: _Optional[int] = ..., max_batch_pfns: _Optional[int] = ..., target: _Optional[_Union[_types_pb2.BalloonTarget, _Mapping]] = ..., actual_pages: _Optional[int] = ..., ballooned_pfns_le32: _Optional[bytes] = ..., balloon_stream: _Optional[bool] = ..., poison_val: _Optional[int] = ...) -> None: ...

class BalloonPages(_message.Message):
    __slots__ = ("pfns_le32", "generation", "on_oom")
    PFNS_LE32_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    ON_OOM_FIELD_NUMBER: _ClassVar[int]
    pfns_le32: bytes
    generation: int
    on_oom: bool
    def __init__(self, pfns_le32: _Optional[bytes] = ..., generation: _Optional[int] = ..., on_oom: _Optional[bool] = ...) -> None: ...

class BalloonBatch(_message.Message):
    __slots__ = ("batch_id", "deflate", "pages")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    DEFLATE_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    deflate: bool
    pages: BalloonPages
    def __init__(self, batch_id: _Optional[int] = ..., deflate: _Optional[bool] = ..., pages: _Optional[_Union[BalloonPages, _Mapping]] = ...) -> None: ...

class BalloonBatchReply(_message.Message):
    __slots__ = ("batch_id", "reply", "status_code", "status_message")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    reply: BalloonReply
    status_code: int
    status_message: str
    def __init__(self, batch_id: _Optional[int] = ..., reply: _Optional[_Union[BalloonReply, _Mapping]] = ..., status_code: _Optional[int] = ..., status_message: _Optional[str] = ...) -> None: ...

class BalloonReply(_message.Message):
    __slots__ = ("accepted_pages", "duplicate_pages", "actual_pages", "reclaimed_frames")
    ACCEPTED_PAGES_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_PAGES_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_PAGES_FIELD_NUMBER: _ClassVar[int]
    RECLAIMED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    accepted_pages: int
    duplicate_pages: int
    actual_pages: int
    reclaimed_frames: int
    def __init__(self, accepted_pages: _Optional[int] = ..., duplicate_pages: _Optional[int] = ..., actual_pages: _Optional[int] = ..., reclaimed_frames: _Optional[int] = ...) -> None: ...

class ReportStatsReply(_message.Message):
    __slots__ = ("interval_s",)
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    interval_s: float
    def __init__(self, interval_s: _Optional[float] = ...) -> None: ...

class WatchTargetRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FreePages(_message.Message):
    __slots__ = ("pfns_le32", "order", "cmd_id", "stop")
    PFNS_LE32_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    CMD_ID_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    pfns_le32: bytes
    order: int
    cmd_id: int
    stop: bool
    def __init__(self, pfns_le32: _Optional[bytes] = ..., order: _Optional[int] = ..., cmd_id: _Optional[int] = ..., stop: _Optional[bool] = ...) -> None: ...

class FreePagesReply(_message.Message):
    __slots__ = ("accepted_pages", "reclaimed_frames")
    ACCEPTED_PAGES_FIELD_NUMBER: _ClassVar[int]
    RECLAIMED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    accepted_pages: int
    reclaimed_frames: int
    def __init__(self, accepted_pages: _Optional[int] = ..., reclaimed_frames: _Optional[int] = ...) -> None: ...

class RequestOutcome(_message.Message):
    __slots__ = ("request_id", "unavailable_pfns_le32")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    UNAVAILABLE_PFNS_LE32_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    unavailable_pfns_le32: bytes
    def __init__(self, request_id: _Optional[int] = ..., unavailable_pfns_le32: _Optional[bytes] = ...) -> None: ...

class RequestOutcomeReply(_message.Message):
    __slots__ = ("dropped_pages",)
    DROPPED_PAGES_FIELD_NUMBER: _ClassVar[int]
    dropped_pages: int
    def __init__(self, dropped_pages: _Optional[int] = ...) -> None: ...
