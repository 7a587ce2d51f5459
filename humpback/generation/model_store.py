"""Models reach Ray workers through an object store (``workers.model_store``; docs/ray.md).

Without a shared file system, a worker cannot read the run folder's adapters or the converted base model
at the driver's paths. With ``workers.model_store`` (an fsspec URL: ``s3://bucket/prefix``,
``gs://...``, ``file:///mnt/store``), the driver publishes each local model folder once under a name
that carries its content hash, and each worker fetches it into its own cache before loading it:

- :func:`publish` (driver) uploads a folder's files, then a ``.humpback-complete`` marker last; a folder
  whose marker says the same content is not uploaded again (a resumed run, a second stage on one model);
- :func:`fetch` (worker) downloads a published folder into ``$HUMPBACK_CACHE/ray-models/`` through a
  scratch folder moved into place whole, so a killed worker leaves nothing half-written.

Object stores are fsspec's (the filesystem layer ``datasets`` already uses); ``s3://`` needs ``s3fs``,
``gs://`` needs ``gcsfs``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError, HumpbackError

MARKER = ".humpback-complete"


class ModelStoreError(HumpbackError):
    """The model store could not be written (driver) or read (worker)."""


def url_problem(url: str) -> str | None:
    """What is wrong with ``url`` as a model store (not a URL, a protocol fsspec cannot open here), or None."""
    import fsspec

    if "://" not in url:
        return ("expected a URL such as s3://bucket/prefix or file:///mnt/store (with a shared file system no "
                "store is needed: the workers read the driver's paths)")
    try:
        fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        return _first_line(e)
    return None


def store_filesystem(url: str):
    """(fsspec filesystem, path inside it) for ``url``."""
    import fsspec

    problem = url_problem(url)
    if problem:
        raise ConfigError(f"workers.model_store {url!r}: {problem}")
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path.rstrip("/")


def published_name(local: Path, digest: str) -> str:
    """``m0-<16 hex of the content hash>``: the folder's name, and what it holds."""
    return f"{local.name or 'model'}-{digest[:16]}"


def publish(local: str, url: str, digest: str, log=print) -> str:
    """Upload the folder ``local`` under ``url`` (the store's root) unless a complete copy of the same
    content (``digest``) is there; returns the published folder's URL."""
    fs, root = store_filesystem(url)
    src = Path(local)
    name = published_name(src, digest)
    target = f"{root}/{name}"
    where = f"{url.rstrip('/')}/{name}"
    try:
        if fs.exists(f"{target}/{MARKER}") and json.loads(fs.cat_file(f"{target}/{MARKER}")).get("digest") == digest:
            log(f"[ray] model store: {src} is already at {where}")
            return where
        files = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
        for p in files:
            rel = p.relative_to(src).as_posix() if src.is_dir() else p.name
            fs.makedirs(f"{target}/{rel}".rsplit("/", 1)[0], exist_ok=True)
            fs.put_file(str(p), f"{target}/{rel}")
        size = sum(p.stat().st_size for p in files)
        fs.pipe_file(f"{target}/{MARKER}", json.dumps({"digest": digest, "files": len(files),
                                                        "single_file": not src.is_dir()}).encode())
    except OSError as e:
        raise ModelStoreError(f"workers.model_store: could not upload {src} to {where}: {_first_line(e)}") from None
    log(f"[ray] model store: uploaded {src} to {where} ({len(files)} files, {size / 2**20:.1f} MiB)")
    return where


def fetch(where: str, cache: Path, host: str) -> Path:
    """The local copy of the published folder ``where``, downloaded into ``cache/ray-models/`` on first use."""
    from ..cache import build_dir

    fs, path = store_filesystem(where)
    name = path.rsplit("/", 1)[-1]
    final = cache / "ray-models" / name
    if (final / MARKER).exists():
        return _entry(final)
    fail = f"Ray worker on {host} cannot read {where} (workers.model_store)"
    try:
        if not fs.exists(f"{path}/{MARKER}"):
            raise ModelStoreError(f"{fail}: no complete upload there (its {MARKER} marker is missing)")
        remote = [p for p in fs.find(path) if not p.endswith("/" + MARKER)]

        def fill(tmp: Path) -> None:
            for p in remote:
                dest = tmp / p[len(path) + 1:]
                dest.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(p, str(dest))
            (tmp / MARKER).write_bytes(fs.cat_file(f"{path}/{MARKER}"))

        build_dir(final, fill)
    except OSError as e:
        raise ModelStoreError(f"{fail}: {_first_line(e)}") from None
    return _entry(final)


def _entry(folder: Path) -> Path:
    """What the model path names: the folder, or its one file when a single file was published."""
    marker = json.loads((folder / MARKER).read_text())
    if marker.get("single_file"):
        return next(p for p in folder.iterdir() if p.name != MARKER)
    return folder


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
