from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class JoinRequest(_message.Message):
    __slots__ = ("participant",)
    PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    participant: str
    def __init__(self, participant: _Optional[str] = ...) -> None: ...

class TickUpdate(_message.Message):
    __slots__ = ("now_s", "wake")
    NOW_S_FIELD_NUMBER: _ClassVar[int]
    WAKE_FIELD_NUMBER: _ClassVar[int]
    now_s: float
    wake: bool
    def __init__(self, now_s: _Optional[float] = ..., wake: _Optional[bool] = ...) -> None: ...

class IdleRequest(_message.Message):
    __slots__ = ("participant", "wake_s")
    PARTICIPANT_FIELD_NUMBER: _ClassVar[int]
    WAKE_S_FIELD_NUMBER: _ClassVar[int]
    participant: str
    wake_s: float
    def __init__(self, participant: _Optional[str] = ..., wake_s: _Optional[float] = ...) -> None: ...

class IdleReply(_message.Message):
    __slots__ = ("now_s",)
    NOW_S_FIELD_NUMBER: _ClassVar[int]
    now_s: float
    def __init__(self, now_s: _Optional[float] = ...) -> None: ...
