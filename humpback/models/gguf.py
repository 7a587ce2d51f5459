"""GGUF files as ordinary transformers models: read once with transformers' GGUF support (the ``gguf``
package dequantizes the weights), rebuilt as a plain model and saved with its tokenizer, chat template and
generation config into the cache, keyed by the file's content hash.

transformers loads a GGUF checkpoint as a model flagged as quantized, which ``save_pretrained`` refuses;
:func:`convert` builds an unflagged model of the same config on the meta device and moves the
dequantized weights into it, so the folder it writes is a plain safetensors checkpoint.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from ..cache import build_dir, cache_root
from ..errors import ConfigError
from ..store.files import hash_file

CONVERT_VERSION = 1  # bump when the folder's layout or contents change meaning
GGUF_MAGIC = b"GGUF"
_HUB_FILE = re.compile(r"^([\w.-]+/[\w.-]+)/(.+\.gguf)$", re.IGNORECASE)


def locate(ref: str) -> Path:
    """A local GGUF file, or one on the hub named ``owner/repo/file.gguf`` (downloaded by huggingface_hub)."""
    path = Path(ref).expanduser()
    if path.exists() or not _HUB_FILE.match(ref) or ref.startswith((".", "/", "~")):
        return path
    repo, filename = _HUB_FILE.match(ref).groups()
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename))
    except Exception as e:  # offline, no such repo or file: one line, naming it
        raise ConfigError(f"{ref}: no local file of that name, and the hub file {filename!r} of {repo!r} could "
                          f"not be fetched ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else e})") from None


def check_gguf(path: Path, label: str) -> str:
    """The file's architecture (``general.architecture``), after checking that it is a GGUF file whose
    metadata reads; a one-line error naming the file otherwise. (Whether transformers knows the
    architecture is its own decision, taken when the file is converted.)"""
    if not path.is_file():
        raise ConfigError(f"{label}: no such GGUF file: {path}" if str(path) != label
                          else f"no such GGUF file: {path}")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != GGUF_MAGIC:
        raise ConfigError(f"{path}: not a GGUF file (it starts with {head!r}; a GGUF file starts with {GGUF_MAGIC!r})")
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ConfigError(f"{path}: reading GGUF files needs the `gguf` package: pip install gguf") from None
    try:
        reader = GGUFReader(path)
        field = reader.fields["general.architecture"]
        arch = bytes(field.parts[field.data[0]]).decode()
    except (KeyError, ValueError, IndexError) as e:
        raise ConfigError(f"{path}: a GGUF file whose metadata cannot be read ({type(e).__name__}: {e})") from None
    return arch


def converted_folder(path: Path, cache_dir: str | Path | None = None) -> Path:
    """Where the conversion of the GGUF file ``path`` lives in the cache (by name and content hash)."""
    stem = re.sub(r"[^\w.-]+", "-", path.name[: -len(".gguf")])
    return cache_root(cache_dir) / f"gguf-{stem}-v{CONVERT_VERSION}-{hash_file(path)[:12]}"


def convert(path: Path, cache_dir: str | Path | None = None, label: str | None = None) -> Path:
    """The transformers folder converted from the GGUF file ``path``: built on first use (with a progress
    line), then read from the cache. ``label`` is how the recipe named it, for messages."""
    label = label or str(path)
    arch = check_gguf(path, label)
    final = converted_folder(path, cache_dir)
    if (final / "config.json").is_file():
        return final
    from ..console import info

    info(f"[model] converting {path.name} ({arch}, GGUF) into a transformers folder, once: {final}")
    started = time.time()
    build_dir(final, lambda tmp: _write(path, tmp, label))
    about = json.loads((final / "humpback-source.json").read_text())
    info(f"  model: {about['parameters'] / 1e6:.1f}M parameters ({about['dtype']}) in {time.time() - started:.0f}s")
    return final


def _write(path: Path, out: Path, label: str) -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..progress import progress_bars

    with progress_bars(False):  # transformers' per-tensor bars; the console line above says what happens
        try:
            tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
            quantized = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        except (ValueError, KeyError, NotImplementedError) as e:
            from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

            raise ConfigError(f"{label}: transformers {transformers.__version__} could not load the GGUF file {path} "
                              f"({str(e).splitlines()[0] if str(e) else type(e).__name__}; it reads the architectures "
                              f"{', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))})") from None
        settings = quantized.config.to_dict()
        settings.pop("quantization_config", None)
        config = type(quantized.config).from_dict(settings)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(quantized.state_dict(), strict=True, assign=True)
        model.tie_weights()
        model.generation_config = quantized.generation_config
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    source = {"source": label, "file": path.name, "sha256": hash_file(path), "architecture": config.model_type,
              "parameters": sum(p.numel() for p in model.parameters()), "dtype": "float32",
              "transformers": transformers.__version__, "convert_version": CONVERT_VERSION}
    (out / "humpback-source.json").write_text(json.dumps(source, indent=1) + "\n")
