"""Load Hugging Face models/tokenizers by id or path with a clear error when they cannot be reached."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gendistill.errors import ModelLoadError


def from_pretrained(loader: Callable[..., Any], name: str, what: str, **kwargs: Any) -> Any:
    """`loader(name, **kwargs)`, turning 'not found / offline' failures into a one-line ModelLoadError."""
    try:
        return loader(name, **kwargs)
    except Exception as error:  # noqa: BLE001 - safetensors, tokenizers and transformers raise their own types
        if not isinstance(error, (OSError, ValueError)) and not _is_weights_error(error):
            raise
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
        if Path(name).exists():
            detail = str(error).splitlines()[0][:300]
            if _is_pickle_error(error):  # torch's message names no file: name the pickle weights it read
                files = ", ".join(str(path) for path in sorted(Path(name).glob("*.bin"))) or name
                raise ModelLoadError(
                    f"{what} {name!r}: {files} cannot be loaded as pickle weights ({type(error).__name__}); the "
                    "file is damaged, or holds more than tensors: replace it, ideally with safetensors"
                ) from None
            raise ModelLoadError(f"{what} {name!r}: the folder exists but cannot be loaded ({detail})") from None
        if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
            raise ModelLoadError(
                f"{what} {name!r}: no such folder; check the path (relative to where you run)"
            ) from None
        hint = (
            "it is not a local folder, and the Hugging Face Hub is not reachable offline (HF_HUB_OFFLINE=1)"
            if offline
            else "it is neither a local folder nor a model id that could be downloaded"
        )
        raise ModelLoadError(
            f"{what} {name!r} cannot be loaded: {hint}; download it where you are online "
            "(e.g. `huggingface-cli download NAME --local-dir DIR`) and pass the local folder path"
        ) from None


def _is_weights_error(error: Exception) -> bool:
    """A corrupt or truncated weights file (safetensors' own exception type is not an OSError; nor are the
    errors of torch.load on a damaged pickle, met when `allow_pickle_weights` is on)."""
    return type(error).__name__ == "SafetensorError" or _is_pickle_error(error)


def _is_pickle_error(error: Exception) -> bool:
    """torch.load on a file that is no (weights-only) pickle: an UnpicklingError, or a RuntimeError of its zip
    reader for a truncated archive."""
    return type(error).__name__ == "UnpicklingError" or (  # by name: the package never imports pickle
        isinstance(error, RuntimeError) and "PytorchStreamReader" in str(error)
    )


def check_model(name: str, what: str, trust_remote_code: bool) -> None:
    """Preflight for a Hugging Face model: a local folder must hold a config.json; a Hub id must be resolvable
    (fails fast when offline)."""
    from transformers import AutoConfig

    path = Path(name)
    if path.exists() and not (path / "config.json").exists():
        raise ModelLoadError(
            f"{what} {name!r}: the folder has no config.json; pass a folder written by "
            "save_pretrained (or `huggingface-cli download`)"
        )
    from_pretrained(AutoConfig.from_pretrained, name, what, trust_remote_code=trust_remote_code)


def check_model_folder(model: str, allow_pickle_weights: bool, section: str) -> None:
    """A local model folder must be one `save_pretrained` wrote, and hold safetensors unless pickle is allowed: a
    pytorch_model.bin is a pickle, which runs code when loaded. One check (and one message) for every model a run
    loads from a folder: the teacher, `student.init_from`, `generator.model`."""
    path = Path(model)
    if not path.exists():
        return
    if not (path / "config.json").exists():
        raise ModelLoadError(
            f"{section} model {model!r}: the folder has no config.json; pass a folder written by "
            "save_pretrained (or `huggingface-cli download`)"
        )
    if not allow_pickle_weights and not list(path.glob("*.safetensors")) and list(path.glob("*.bin")):
        raise ModelLoadError(
            f"{section} model {model!r}: the folder holds only pickle weights (*.bin), which can run code "
            f"when loaded; convert them to safetensors, or set {section}.allow_pickle_weights: true if you "
            "trust the folder"
        )


def check_tokenizer_vocabulary(model: str, section: str, trust_remote_code: bool) -> None:
    """A local model folder's tokenizer must cover the model's vocabulary. Without its vocabulary files (vocab.txt,
    tokenizer.json, ...) transformers silently builds a tokenizer of the 5 special tokens, and the teacher trains at
    chance on texts that are all [UNK]; a tokenizer under half the model's `vocab_size` is that, or the wrong one."""
    from transformers import AutoConfig, AutoTokenizer

    if not Path(model).is_dir():
        return  # a Hub download comes with its tokenizer files
    config = from_pretrained(AutoConfig.from_pretrained, model, f"{section} model", trust_remote_code=trust_remote_code)
    expected = getattr(config, "vocab_size", None)
    if not isinstance(expected, int) or expected <= 0:
        return
    tokenizer = from_pretrained(
        AutoTokenizer.from_pretrained, model, f"{section} tokenizer", trust_remote_code=trust_remote_code
    )
    if len(tokenizer) < expected // 2:
        raise ModelLoadError(
            f"{section} model {model!r}: its tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
            f"{expected}: the folder lacks its vocabulary files (vocab.txt, tokenizer.json, ...); save the tokenizer "
            "into it too (tokenizer.save_pretrained) or copy its files from where the model came from"
        )
    if len(tokenizer) > expected:  # ids from `expected` up would index past the embedding table mid-run
        raise ModelLoadError(
            f"{section} model {model!r}: its tokenizer has {len(tokenizer)} tokens but the model's vocab_size is "
            f"{expected}, so some token ids have no embedding row; the tokenizer and config.json come from different "
            "models: copy the tokenizer files from where the weights came from"
        )


def check_weights_match_config(model: str, section: str, trust_remote_code: bool) -> None:
    """A local folder's safetensors weights must have the tensors its config.json describes. transformers would
    otherwise fail mid-run with a traceback, or, worse, start a tensor whose shape disagrees (`ignore_mismatched_
    sizes` is on for the new head) or that is missing (position embeddings) from random and train silently at
    chance. Reads the weights' headers only (safetensors.safe_open) and builds the architecture on the meta device
    (no memory), so it costs about a second for any model size."""
    path = Path(model)
    files = sorted(path.glob("model*.safetensors")) if path.is_dir() else []
    if not files:
        return  # a Hub id, or pickle weights (allowed by the user): left to the load
    from accelerate import init_empty_weights
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModel

    config = from_pretrained(AutoConfig.from_pretrained, model, f"{section} model", trust_remote_code=trust_remote_code)
    try:
        with init_empty_weights():
            skeleton = AutoModel.from_config(config, trust_remote_code=trust_remote_code)
    except Exception:  # noqa: BLE001 - an architecture AutoModel cannot build from its config alone: left to the load
        return
    expected = {name: tuple(tensor.shape) for name, tensor in skeleton.state_dict().items()}
    tied = set(getattr(skeleton, "_tied_weights_keys", None) or ())  # stored once, under their source's name
    prefix = f"{skeleton.base_model_prefix}." if skeleton.base_model_prefix else ""
    stored: dict[str, tuple[tuple[int, ...], Path]] = {}
    for file in files:
        try:
            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():  # noqa: SIM118 - safe_open is no mapping
                    stored[key.removeprefix(prefix)] = (tuple(handle.get_slice(key).get_shape()), file)
        except Exception:  # noqa: BLE001 - a damaged header: the load reports it, naming the file
            return
    for name, shape in expected.items():
        if name in stored and stored[name][0] != shape:
            found, file = stored[name]
            raise ModelLoadError(
                f"{section} model {model!r}: its weights and config.json disagree: {file.name} holds {name!r} of "
                f"shape {list(found)}, config.json describes {list(shape)}; the folder mixes files of two models: "
                "copy config.json from where the weights came from"
            )
    missing = [name for name in expected if "embeddings" in name and name not in stored and name not in tied]
    if missing:
        raise ModelLoadError(
            f"{section} model {model!r}: {', '.join(repr(name) for name in missing)} missing from "
            f"{', '.join(file.name for file in files)}, though config.json's architecture has it (it would start from "
            "random values and train silently wrong); the weights are incomplete or of another model"
        )


# ---- gendistill's own models (students, ONNX exports) as Hub repos -----------------------------------------------
def looks_like_path(name: str) -> bool:
    """A name that can only be a local path (never a Hub repo id `user/name` or `name`)."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name or Path(name).is_absolute()
