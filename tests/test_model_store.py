"""Issue 25: models reach Ray workers through an object store (``workers.model_store``), no cluster needed:
the driver's upload, a worker's download into its cache, and the errors that name the URL."""

import shutil
from pathlib import Path

import pytest

from humpback.config import GenerationConfig, load_config
from humpback.errors import ConfigError
from humpback.generation.model_store import MARKER, ModelStoreError, fetch, publish, published_name
from humpback.generation.remote import ModelSpec, check_readable, fetched

TINY = Path(__file__).parent.parent / "recipes" / "tiny-cpu.yaml"


def model_folder(root: Path, name: str, text: str = "weights") -> Path:
    folder = root / name
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "sub" / "model.bin").write_text(text)
    return folder


def files(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MARKER}


def test_a_published_folder_is_fetched_whole_and_uploaded_once(tmp_path):
    m0 = model_folder(tmp_path / "run" / "models", "m0")
    store = f"file://{tmp_path / 'store'}"
    said = []
    where = publish(str(m0), store, "ab" * 32, said.append)
    assert where == f"{store}/m0-{'ab' * 8}" == f"{store}/{published_name(m0, 'ab' * 32)}"
    assert said == [f"[ray] model store: uploaded {m0} to {where} (2 files, 0.0 MiB)"]
    assert publish(str(m0), store + "/", "ab" * 32, said.append) == where
    assert said[-1] == f"[ray] model store: {m0} is already at {where}"

    local = fetch(where, tmp_path / "worker-cache", "host")
    assert local == tmp_path / "worker-cache" / "ray-models" / f"m0-{'ab' * 8}"
    assert files(local) == files(m0) == {"config.json": b'{"a": 1}', "sub/model.bin": b"weights"}
    shutil.rmtree(tmp_path / "store")  # a second call reads the worker's copy, not the store
    assert fetch(where, tmp_path / "worker-cache", "host") == local


def test_new_content_is_uploaded_beside_the_old(tmp_path):
    store = f"file://{tmp_path / 'store'}"
    first = publish(str(model_folder(tmp_path / "a", "m1", "old")), store, "11" * 32, lambda _: None)
    second = publish(str(model_folder(tmp_path / "b", "m1", "new")), store, "22" * 32, lambda _: None)
    assert first != second
    assert (tmp_path / "store" / f"m1-{'11' * 8}" / "sub" / "model.bin").read_text() == "old"
    assert (tmp_path / "store" / f"m1-{'22' * 8}" / "sub" / "model.bin").read_text() == "new"


def test_a_single_file_model_is_fetched_as_that_file(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF")
    where = publish(str(gguf), f"file://{tmp_path / 'store'}", "cd" * 32, lambda _: None)
    local = fetch(where, tmp_path / "cache", "host")
    assert local.name == "model.gguf" and local.read_bytes() == b"GGUF"


def test_a_worker_loads_the_fetched_copies_when_the_drivers_paths_are_not_there(tmp_path):
    base = model_folder(tmp_path / "driver", "base")
    adapter = model_folder(tmp_path / "driver" / "run" / "models", "backward")
    store = f"file://{tmp_path / 'store'}"
    sources = ((str(base), publish(str(base), store, "01" * 32, lambda _: None)),
               (str(adapter), publish(str(adapter), store, "02" * 32, lambda _: None)))
    spec = ModelSpec(GenerationConfig(), str(base), str(adapter), None, 0, sources=sources)
    shutil.rmtree(tmp_path / "driver")  # this "worker" cannot see the driver's folders
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUMPBACK_CACHE", str(tmp_path / "worker-cache"))
        local = fetched(spec, "host")
    models = tmp_path / "worker-cache" / "ray-models"
    assert (local.model, local.adapter, local.sources) == (str(models / f"base-{'01' * 8}"),
                                                           str(models / f"backward-{'02' * 8}"), ())
    check_readable(local, "host")
    assert fetched(ModelSpec(GenerationConfig(), "hub/id", None, None, 0), "host").model == "hub/id"


def test_an_incomplete_or_missing_upload_names_the_url(tmp_path):
    where = publish(str(model_folder(tmp_path, "m0")), f"file://{tmp_path / 'store'}", "ef" * 32, lambda _: None)
    (tmp_path / "store" / f"m0-{'ef' * 8}" / MARKER).unlink()  # an upload killed before its marker
    with pytest.raises(ModelStoreError) as e:
        fetch(where, tmp_path / "cache", "node-3")
    assert str(e.value) == (f"Ray worker on node-3 cannot read {where} (workers.model_store): no complete upload "
                            f"there (its {MARKER} marker is missing)")
    assert not (tmp_path / "cache" / "ray-models" / f"m0-{'ef' * 8}").exists()


@pytest.mark.parametrize("override, message", [
    ("workers.model_store=file:///tmp/s", "'workers.model_store' is only used by workers.engine ray"),
    ("workers.engine=ray workers.model_store=/mnt/store", "'workers.model_store' got '/mnt/store': expected a URL"),
    ("workers.engine=ray workers.model_store=nosuch://b/x", "got 'nosuch://b/x': ValueError: Protocol not known"),
])
def test_the_model_store_key_is_checked(override, message):
    with pytest.raises(ConfigError, match=message) as e:
        load_config(TINY, override.split())
    assert "command line" in str(e.value)
