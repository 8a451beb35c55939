from balloon.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HostOp(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HOST_OP_UNSPECIFIED: _ClassVar[HostOp]
    HOST_OP_ATTACH: _ClassVar[HostOp]
    HOST_OP_DISCARD: _ClassVar[HostOp]
    HOST_OP_RESTORE: _ClassVar[HostOp]
    HOST_OP_STATS: _ClassVar[HostOp]
    HOST_OP_RESET: _ClassVar[HostOp]
    HOST_OP_REPORT_FREE: _ClassVar[HostOp]
    HOST_OP_HINT_FREE: _ClassVar[HostOp]
    HOST_OP_HINT_STOP: _ClassVar[HostOp]
HOST_OP_UNSPECIFIED: HostOp
HOST_OP_ATTACH: HostOp
HOST_OP_DISCARD: HostOp
HOST_OP_RESTORE: HostOp
HOST_OP_STATS: HostOp
HOST_OP_RESET: HostOp
HOST_OP_REPORT_FREE: HostOp
HOST_OP_HINT_FREE: HostOp
HOST_OP_HINT_STOP: HostOp

class MmioAccess(_message.Message):
    __slots__ = ("offset", "write", "value")
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    WRITE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    offset: int
    write: bool
    value: int
    def __init__(self, offset: _Optional[int] = ..., write: _Optional[bool] = ..., value: _Optional[int] = ...) -> None: ...

class MmioAccessReply(_message.Message):
    __slots__ = ("value",)
    VALUE_FIELD_NUMBER: _ClassVar[int]
    value: int
    def __init__(self, value: _Optional[int] = ...) -> None: ...

class InterruptsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InterruptRaised(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeviceModelHello(_message.Message):
    __slots__ = ("vm_ids",)
    VM_IDS_FIELD_NUMBER: _ClassVar[int]
    vm_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, vm_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ExitDone(_message.Message):
    __slots__ = ("exit_id", "value", "interrupt")
    EXIT_ID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    INTERRUPT_FIELD_NUMBER: _ClassVar[int]
    exit_id: int
    value: int
    interrupt: bool
    def __init__(self, exit_id: _Optional[int] = ..., value: _Optional[int] = ..., interrupt: _Optional[bool] = ...) -> None: ...

class RaiseInterrupt(_message.Message):
    __slots__ = ("vm_id",)
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    def __init__(self, vm_id: _Optional[str] = ...) -> None: ...

class DeviceModelMessage(_message.Message):
    __slots__ = ("hello", "exit_done", "interrupt")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    EXIT_DONE_FIELD_NUMBER: _ClassVar[int]
    INTERRUPT_FIELD_NUMBER: _ClassVar[int]
    hello: DeviceModelHello
    exit_done: ExitDone
    interrupt: RaiseInterrupt
    def __init__(self, hello: _Optional[_Union[DeviceModelHello, _Mapping]] = ..., exit_done: _Optional[_Union[ExitDone, _Mapping]] = ..., interrupt: _Optional[_Union[RaiseInterrupt, _Mapping]] = ...) -> None: ...

class GuestExit(_message.Message):
    __slots__ = ("exit_id", "vm_id", "access")
    EXIT_ID_FIELD_NUMBER: _ClassVar[int]
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    ACCESS_FIELD_NUMBER: _ClassVar[int]
    exit_id: int
    vm_id: str
    access: MmioAccess
    def __init__(self, exit_id: _Optional[int] = ..., vm_id: _Optional[str] = ..., access: _Optional[_Union[MmioAccess, _Mapping]] = ...) -> None: ...

class TargetChange(_message.Message):
    __slots__ = ("vm_id", "target")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    target: _types_pb2.BalloonTarget
    def __init__(self, vm_id: _Optional[str] = ..., target: _Optional[_Union[_types_pb2.BalloonTarget, _Mapping]] = ...) -> None: ...

class HypervisorMessage(_message.Message):
    __slots__ = ("exit", "target")
    EXIT_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    exit: GuestExit
    target: TargetChange
    def __init__(self, exit: _Optional[_Union[GuestExit, _Mapping]] = ..., target: _Optional[_Union[TargetChange, _Mapping]] = ...) -> None: ...

class HostCallRequest(_message.Message):
    __slots__ = ("vm_id", "op", "features", "pfns_le32", "on_oom", "stats", "order", "cmd_id", "poison_val")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    PFNS_LE32_FIELD_NUMBER: _ClassVar[int]
    ON_OOM_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    CMD_ID_FIELD_NUMBER: _ClassVar[int]
    POISON_VAL_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    op: HostOp
    features: int
    pfns_le32: bytes
    on_oom: bool
    stats: _types_pb2.GuestStats
    order: int
    cmd_id: int
    poison_val: int
    def __init__(self, vm_id: _Optional[str] = ..., op: _Optional[_Union[HostOp, str]] = ..., features: _Optional[int] = ..., pfns_le32: _Optional[bytes] = ..., on_oom: _Optional[bool] = ..., stats: _Optional[_Union[_types_pb2.GuestStats, _Mapping]] = ..., order: _Optional[int] = ..., cmd_id: _Optional[int] = ..., poison_val: _Optional[int] = ...) -> None: ...

class HostCallReply(_message.Message):
    __slots__ = ("accepted_pages", "actual_pages", "reclaimed_frames")
    ACCEPTED_PAGES_FIELD_NUMBER: _ClassVar[int]
    ACTUAL_PAGES_FIELD_NUMBER: _ClassVar[int]
    RECLAIMED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    accepted_pages: int
    actual_pages: int
    reclaimed_frames: int
    def __init__(self, accepted_pages: _Optional[int] = ..., actual_pages: _Optional[int] = ..., reclaimed_frames: _Optional[int] = ...) -> None: ...
