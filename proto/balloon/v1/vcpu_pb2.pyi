from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class AccessRequest(_message.Message):
    __slots__ = ("gpfns_le32",)
    GPFNS_LE32_FIELD_NUMBER: _ClassVar[int]
    gpfns_le32: bytes
    def __init__(self, gpfns_le32: _Optional[bytes] = ...) -> None: ...

class AccessReply(_message.Message):
    __slots__ = ("faulted_pages", "swapped_in_pages", "remote_pages", "stall_s", "failed_pages")
    FAULTED_PAGES_FIELD_NUMBER: _ClassVar[int]
    SWAPPED_IN_PAGES_FIELD_NUMBER: _ClassVar[int]
    REMOTE_PAGES_FIELD_NUMBER: _ClassVar[int]
    STALL_S_FIELD_NUMBER: _ClassVar[int]
    FAILED_PAGES_FIELD_NUMBER: _ClassVar[int]
    faulted_pages: int
    swapped_in_pages: int
    remote_pages: int
    stall_s: float
    failed_pages: int
    def __init__(self, faulted_pages: _Optional[int] = ..., swapped_in_pages: _Optional[int] = ..., remote_pages: _Optional[int] = ..., stall_s: _Optional[float] = ..., failed_pages: _Optional[int] = ...) -> None: ...
