from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChunkTask(_message.Message):
    __slots__ = ("query_id", "chunk_id", "database", "sql", "batch_bytes", "max_result_bytes", "attempt", "more_chunk_ids", "more_sql", "interactive", "probe_key")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    SQL_FIELD_NUMBER: _ClassVar[int]
    BATCH_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_RESULT_BYTES_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    MORE_CHUNK_IDS_FIELD_NUMBER: _ClassVar[int]
    MORE_SQL_FIELD_NUMBER: _ClassVar[int]
    INTERACTIVE_FIELD_NUMBER: _ClassVar[int]
    PROBE_KEY_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    chunk_id: int
    database: str
    sql: str
    batch_bytes: int
    max_result_bytes: int
    attempt: int
    more_chunk_ids: _containers.RepeatedScalarFieldContainer[int]
    more_sql: _containers.RepeatedScalarFieldContainer[str]
    interactive: bool
    probe_key: str
    def __init__(self, query_id: _Optional[str] = ..., chunk_id: _Optional[int] = ..., database: _Optional[str] = ..., sql: _Optional[str] = ..., batch_bytes: _Optional[int] = ..., max_result_bytes: _Optional[int] = ..., attempt: _Optional[int] = ..., more_chunk_ids: _Optional[_Iterable[int]] = ..., more_sql: _Optional[_Iterable[str]] = ..., interactive: _Optional[bool] = ..., probe_key: _Optional[str] = ...) -> None: ...

class ColumnSchema(_message.Message):
    __slots__ = ("name", "definition")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    name: str
    definition: str
    def __init__(self, name: _Optional[str] = ..., definition: _Optional[str] = ...) -> None: ...

class ResultSchema(_message.Message):
    __slots__ = ("columns",)
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedCompositeFieldContainer[ColumnSchema]
    def __init__(self, columns: _Optional[_Iterable[_Union[ColumnSchema, _Mapping]]] = ...) -> None: ...

class RowBatch(_message.Message):
    __slots__ = ("data", "row_count")
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    row_count: int
    def __init__(self, data: _Optional[bytes] = ..., row_count: _Optional[int] = ...) -> None: ...

class ResultEnd(_message.Message):
    __slots__ = ("row_count", "byte_count", "checksum", "elapsed_seconds")
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    BYTE_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    row_count: int
    byte_count: int
    checksum: str
    elapsed_seconds: float
    def __init__(self, row_count: _Optional[int] = ..., byte_count: _Optional[int] = ..., checksum: _Optional[str] = ..., elapsed_seconds: _Optional[float] = ...) -> None: ...

class WholeResult(_message.Message):
    __slots__ = ("schema", "batch", "end")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    schema: ResultSchema
    batch: RowBatch
    end: ResultEnd
    def __init__(self, schema: _Optional[_Union[ResultSchema, _Mapping]] = ..., batch: _Optional[_Union[RowBatch, _Mapping]] = ..., end: _Optional[_Union[ResultEnd, _Mapping]] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("tag", "task")
    TAG_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    tag: int
    task: ChunkTask
    def __init__(self, tag: _Optional[int] = ..., task: _Optional[_Union[ChunkTask, _Mapping]] = ...) -> None: ...

class TaskFailure(_message.Message):
    __slots__ = ("code", "details", "mysql_errno")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    MYSQL_ERRNO_FIELD_NUMBER: _ClassVar[int]
    code: int
    details: str
    mysql_errno: int
    def __init__(self, code: _Optional[int] = ..., details: _Optional[str] = ..., mysql_errno: _Optional[int] = ...) -> None: ...

class SessionReply(_message.Message):
    __slots__ = ("tag", "whole", "failure")
    TAG_FIELD_NUMBER: _ClassVar[int]
    WHOLE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    tag: int
    whole: WholeResult
    failure: TaskFailure
    def __init__(self, tag: _Optional[int] = ..., whole: _Optional[_Union[WholeResult, _Mapping]] = ..., failure: _Optional[_Union[TaskFailure, _Mapping]] = ...) -> None: ...

class ResultMessage(_message.Message):
    __slots__ = ("schema", "batch", "end", "whole")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    WHOLE_FIELD_NUMBER: _ClassVar[int]
    schema: ResultSchema
    batch: RowBatch
    end: ResultEnd
    whole: WholeResult
    def __init__(self, schema: _Optional[_Union[ResultSchema, _Mapping]] = ..., batch: _Optional[_Union[RowBatch, _Mapping]] = ..., end: _Optional[_Union[ResultEnd, _Mapping]] = ..., whole: _Optional[_Union[WholeResult, _Mapping]] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("query_id",)
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    def __init__(self, query_id: _Optional[str] = ...) -> None: ...

class CancelReply(_message.Message):
    __slots__ = ("cancelled_tasks",)
    CANCELLED_TASKS_FIELD_NUMBER: _ClassVar[int]
    cancelled_tasks: int
    def __init__(self, cancelled_tasks: _Optional[int] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("include_chunks",)
    INCLUDE_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    include_chunks: bool
    def __init__(self, include_chunks: _Optional[bool] = ...) -> None: ...

class TableChunks(_message.Message):
    __slots__ = ("database", "table", "chunk_ids")
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    TABLE_FIELD_NUMBER: _ClassVar[int]
    CHUNK_IDS_FIELD_NUMBER: _ClassVar[int]
    database: str
    table: str
    chunk_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, database: _Optional[str] = ..., table: _Optional[str] = ..., chunk_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class RunningTask(_message.Message):
    __slots__ = ("query_id", "chunk_id", "running_seconds")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    RUNNING_SECONDS_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    chunk_id: int
    running_seconds: float
    def __init__(self, query_id: _Optional[str] = ..., chunk_id: _Optional[int] = ..., running_seconds: _Optional[float] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("worker_id", "database_ok", "database_error", "running_tasks", "queued_tasks", "max_concurrent_tasks", "tables", "tasks", "tasks_completed")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    DATABASE_OK_FIELD_NUMBER: _ClassVar[int]
    DATABASE_ERROR_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASKS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_TASKS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_TASKS_FIELD_NUMBER: _ClassVar[int]
    TABLES_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    TASKS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    database_ok: bool
    database_error: str
    running_tasks: int
    queued_tasks: int
    max_concurrent_tasks: int
    tables: _containers.RepeatedCompositeFieldContainer[TableChunks]
    tasks: _containers.RepeatedCompositeFieldContainer[RunningTask]
    tasks_completed: int
    def __init__(self, worker_id: _Optional[str] = ..., database_ok: _Optional[bool] = ..., database_error: _Optional[str] = ..., running_tasks: _Optional[int] = ..., queued_tasks: _Optional[int] = ..., max_concurrent_tasks: _Optional[int] = ..., tables: _Optional[_Iterable[_Union[TableChunks, _Mapping]]] = ..., tasks: _Optional[_Iterable[_Union[RunningTask, _Mapping]]] = ..., tasks_completed: _Optional[int] = ...) -> None: ...

class LoadSegment(_message.Message):
    __slots__ = ("table", "create_sql", "replace", "size", "rows", "defer_keys")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    CREATE_SQL_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    DEFER_KEYS_FIELD_NUMBER: _ClassVar[int]
    table: str
    create_sql: str
    replace: bool
    size: int
    rows: int
    defer_keys: bool
    def __init__(self, table: _Optional[str] = ..., create_sql: _Optional[str] = ..., replace: _Optional[bool] = ..., size: _Optional[int] = ..., rows: _Optional[int] = ..., defer_keys: _Optional[bool] = ...) -> None: ...

class LoadBatchHeader(_message.Message):
    __slots__ = ("database", "fields_terminated_by", "fields_enclosed_by", "lines_terminated_by", "sql_mode", "character_set", "segments")
    DATABASE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_TERMINATED_BY_FIELD_NUMBER: _ClassVar[int]
    FIELDS_ENCLOSED_BY_FIELD_NUMBER: _ClassVar[int]
    LINES_TERMINATED_BY_FIELD_NUMBER: _ClassVar[int]
    SQL_MODE_FIELD_NUMBER: _ClassVar[int]
    CHARACTER_SET_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    database: str
    fields_terminated_by: str
    fields_enclosed_by: str
    lines_terminated_by: str
    sql_mode: str
    character_set: str
    segments: _containers.RepeatedCompositeFieldContainer[LoadSegment]
    def __init__(self, database: _Optional[str] = ..., fields_terminated_by: _Optional[str] = ..., fields_enclosed_by: _Optional[str] = ..., lines_terminated_by: _Optional[str] = ..., sql_mode: _Optional[str] = ..., character_set: _Optional[str] = ..., segments: _Optional[_Iterable[_Union[LoadSegment, _Mapping]]] = ...) -> None: ...

class LoadBatchRequest(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: LoadBatchHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[LoadBatchHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class SegmentResult(_message.Message):
    __slots__ = ("table", "rows_loaded", "warnings", "warning_messages")
    TABLE_FIELD_NUMBER: _ClassVar[int]
    ROWS_LOADED_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    WARNING_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    table: str
    rows_loaded: int
    warnings: int
    warning_messages: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, table: _Optional[str] = ..., rows_loaded: _Optional[int] = ..., warnings: _Optional[int] = ..., warning_messages: _Optional[_Iterable[str]] = ...) -> None: ...

class LoadBatchReply(_message.Message):
    __slots__ = ("segments", "checksum")
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[SegmentResult]
    checksum: str
    def __init__(self, segments: _Optional[_Iterable[_Union[SegmentResult, _Mapping]]] = ..., checksum: _Optional[str] = ...) -> None: ...

class AdminRequest(_message.Message):
    __slots__ = ("statements",)
    STATEMENTS_FIELD_NUMBER: _ClassVar[int]
    statements: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, statements: _Optional[_Iterable[str]] = ...) -> None: ...

class AdminReply(_message.Message):
    __slots__ = ("executed",)
    EXECUTED_FIELD_NUMBER: _ClassVar[int]
    executed: int
    def __init__(self, executed: _Optional[int] = ...) -> None: ...
