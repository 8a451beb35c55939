from balloon.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReserveRequest(_message.Message):
    __slots__ = ("migration_id", "vm_id", "guest_pages", "pages", "home_node")
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    GUEST_PAGES_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    HOME_NODE_FIELD_NUMBER: _ClassVar[int]
    migration_id: str
    vm_id: str
    guest_pages: int
    pages: int
    home_node: int
    def __init__(self, migration_id: _Optional[str] = ..., vm_id: _Optional[str] = ..., guest_pages: _Optional[int] = ..., pages: _Optional[int] = ..., home_node: _Optional[int] = ...) -> None: ...

class ReserveReply(_message.Message):
    __slots__ = ("reserved_pages", "guest_address")
    RESERVED_PAGES_FIELD_NUMBER: _ClassVar[int]
    GUEST_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    reserved_pages: int
    guest_address: str
    def __init__(self, reserved_pages: _Optional[int] = ..., guest_address: _Optional[str] = ...) -> None: ...

class PageBatch(_message.Message):
    __slots__ = ("migration_id", "round", "gpfns_le32", "tokens_le32")
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    GPFNS_LE32_FIELD_NUMBER: _ClassVar[int]
    TOKENS_LE32_FIELD_NUMBER: _ClassVar[int]
    migration_id: str
    round: int
    gpfns_le32: bytes
    tokens_le32: bytes
    def __init__(self, migration_id: _Optional[str] = ..., round: _Optional[int] = ..., gpfns_le32: _Optional[bytes] = ..., tokens_le32: _Optional[bytes] = ...) -> None: ...

class PageBatchReply(_message.Message):
    __slots__ = ("accepted_pages",)
    ACCEPTED_PAGES_FIELD_NUMBER: _ClassVar[int]
    accepted_pages: int
    def __init__(self, accepted_pages: _Optional[int] = ...) -> None: ...

class CommitRequest(_message.Message):
    __slots__ = ("migration_id", "vm_id", "guest_pages", "home_node", "balloon_capable", "target", "ballooned_pfns_le32", "content_pfns_le32", "digest", "attached", "accepted_features", "poison_val", "acted_generation", "guest_token")
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    GUEST_PAGES_FIELD_NUMBER: _ClassVar[int]
    HOME_NODE_FIELD_NUMBER: _ClassVar[int]
    BALLOON_CAPABLE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    BALLOONED_PFNS_LE32_FIELD_NUMBER: _ClassVar[int]
    CONTENT_PFNS_LE32_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    ATTACHED_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FEATURES_FIELD_NUMBER: _ClassVar[int]
    POISON_VAL_FIELD_NUMBER: _ClassVar[int]
    ACTED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    GUEST_TOKEN_FIELD_NUMBER: _ClassVar[int]
    migration_id: str
    vm_id: str
    guest_pages: int
    home_node: int
    balloon_capable: bool
    target: _types_pb2.BalloonTarget
    ballooned_pfns_le32: bytes
    content_pfns_le32: bytes
    digest: int
    attached: bool
    accepted_features: int
    poison_val: int
    acted_generation: int
    guest_token: str
    def __init__(self, migration_id: _Optional[str] = ..., vm_id: _Optional[str] = ..., guest_pages: _Optional[int] = ..., home_node: _Optional[int] = ..., balloon_capable: _Optional[bool] = ..., target: _Optional[_Union[_types_pb2.BalloonTarget, _Mapping]] = ..., ballooned_pfns_le32: _Optional[bytes] = ..., content_pfns_le32: _Optional[bytes] = ..., digest: _Optional[int] = ..., attached: _Optional[bool] = ..., accepted_features: _Optional[int] = ..., poison_val: _Optional[int] = ..., acted_generation: _Optional[int] = ..., guest_token: _Optional[str] = ...) -> None: ...

class CommitReply(_message.Message):
    __slots__ = ("resident_pages",)
    RESIDENT_PAGES_FIELD_NUMBER: _ClassVar[int]
    resident_pages: int
    def __init__(self, resident_pages: _Optional[int] = ...) -> None: ...

class AbortRequest(_message.Message):
    __slots__ = ("migration_id",)
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    migration_id: str
    def __init__(self, migration_id: _Optional[str] = ...) -> None: ...

class AbortReply(_message.Message):
    __slots__ = ("released_pages",)
    RELEASED_PAGES_FIELD_NUMBER: _ClassVar[int]
    released_pages: int
    def __init__(self, released_pages: _Optional[int] = ...) -> None: ...

class MigrateRequest(_message.Message):
    __slots__ = ("vm_id", "destination", "destination_name")
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_NAME_FIELD_NUMBER: _ClassVar[int]
    vm_id: str
    destination: str
    destination_name: str
    def __init__(self, vm_id: _Optional[str] = ..., destination: _Optional[str] = ..., destination_name: _Optional[str] = ...) -> None: ...

class MigrationStatus(_message.Message):
    __slots__ = ("migration_id", "vm_id", "destination", "phase", "rounds", "pages_sent", "last_dirty_pages", "dirty_rate_pages_per_s", "reserved_pages", "started_at_s", "finished_at_s", "error", "detail")
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    VM_ID_FIELD_NUMBER: _ClassVar[int]
    DESTINATION_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    PAGES_SENT_FIELD_NUMBER: _ClassVar[int]
    LAST_DIRTY_PAGES_FIELD_NUMBER: _ClassVar[int]
    DIRTY_RATE_PAGES_PER_S_FIELD_NUMBER: _ClassVar[int]
    RESERVED_PAGES_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_S_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_S_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    migration_id: str
    vm_id: str
    destination: str
    phase: str
    rounds: int
    pages_sent: int
    last_dirty_pages: int
    dirty_rate_pages_per_s: float
    reserved_pages: int
    started_at_s: float
    finished_at_s: float
    error: str
    detail: str
    def __init__(self, migration_id: _Optional[str] = ..., vm_id: _Optional[str] = ..., destination: _Optional[str] = ..., phase: _Optional[str] = ..., rounds: _Optional[int] = ..., pages_sent: _Optional[int] = ..., last_dirty_pages: _Optional[int] = ..., dirty_rate_pages_per_s: _Optional[float] = ..., reserved_pages: _Optional[int] = ..., started_at_s: _Optional[float] = ..., finished_at_s: _Optional[float] = ..., error: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ListMigrationsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListMigrationsReply(_message.Message):
    __slots__ = ("migrations",)
    MIGRATIONS_FIELD_NUMBER: _ClassVar[int]
    migrations: _containers.RepeatedCompositeFieldContainer[MigrationStatus]
    def __init__(self, migrations: _Optional[_Iterable[_Union[MigrationStatus, _Mapping]]] = ...) -> None: ...
