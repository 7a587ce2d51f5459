"""The run folder: atomic files and hashes (``io``), identities of models and sources
(``identity``), the manifest and content-addressed stages (``manifest``), the sharded-stage
protocol (``shards``) and the worker split (``workers``)."""

from .identity import model_identity, source_identity
from .io import (atomic_path, count_rows, hash_file, hash_json, hash_path, package_versions, read_table,
                 write_json, write_table, write_table_stream, write_text)
from .manifest import RunStore, StageResult, Step
from .shards import shard_file
from .workers import Worker

__all__ = ["RunStore", "StageResult", "Step", "Worker", "atomic_path", "count_rows", "hash_file", "hash_json",
           "hash_path", "model_identity", "package_versions", "read_table", "shard_file", "source_identity",
           "write_json", "write_table", "write_table_stream", "write_text"]
