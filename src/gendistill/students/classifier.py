"""`StudentClassifier`: a trained student with its tokenizer and label names; save/load and predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer
from torch import nn

from gendistill.errors import ModelLoadError
from gendistill.io import atomic_path, write_json
from gendistill.students.models import StudentSpec, build_student, count_parameters
from gendistill.students.vocab import StudentTokenizer

CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, ID_MAP_FILE = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "id_map.safetensors",
)


class StudentClassifier:
    """A student network plus everything needed to go from raw texts to labels."""

    def __init__(
        self,
        spec: StudentSpec,
        tokenizer: StudentTokenizer,
        label_names: list[str],
        model: nn.Module | None = None,
        info: dict | None = None,
    ):
        self.spec = spec
        self.tokenizer = tokenizer
        self.label_names = list(label_names)
        self.model = model if model is not None else build_student(spec)
        self.info = dict(info or {})

    @property
    def num_parameters(self) -> int:
        return count_parameters(self.model)

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.model.state_dict().items()}
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            save_file(state, str(tmp))
        with atomic_path(directory / TOKENIZER_FILE) as tmp:
            self.tokenizer.tokenizer.save(str(tmp))
        if self.tokenizer.id_map is not None:
            with atomic_path(directory / ID_MAP_FILE) as tmp:
                save_numpy({"id_map": self.tokenizer.id_map}, str(tmp))
        write_json(
            directory / CONFIG_FILE,
            {
                "spec": self.spec.to_dict(),
                "label_names": self.label_names,
                "max_length": self.tokenizer.max_length,
                "min_length": self.tokenizer.min_length,
                "pruned_teacher_vocab": self.tokenizer.id_map is not None,
                "info": self.info,
            },
        )

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> StudentClassifier:
        directory = Path(directory)
        try:
            config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
            spec = StudentSpec(**config["spec"])
            tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
            id_map = load_numpy(str(directory / ID_MAP_FILE))["id_map"] if config["pruned_teacher_vocab"] else None
            state = load_file(str(directory / WEIGHTS_FILE))
        except FileNotFoundError as error:
            raise ModelLoadError(
                f"{directory}: not a student directory ({Path(error.filename).name} missing)"
            ) from None
        except (KeyError, TypeError, json.JSONDecodeError) as error:
            raise ModelLoadError(f"{directory}: invalid student config.json ({error})") from None
        except Exception as error:  # noqa: BLE001 - safetensors/tokenizers raise their own types on damaged files
            raise ModelLoadError(
                f"{directory}: a student file is damaged ({type(error).__name__}: {str(error)[:200]}); re-export or "
                "retrain it"
            ) from None
        if len(config["label_names"]) != spec.num_labels:
            raise ModelLoadError(
                f"{directory}: config.json names {len(config['label_names'])} labels but the network has "
                f"{spec.num_labels} outputs; the folder is inconsistent: retrain or re-save it"
            )
        student_tokenizer = StudentTokenizer(tokenizer, config["max_length"], id_map, config.get("min_length", 1))
        student = cls(spec, student_tokenizer, config["label_names"], info=config.get("info"))
        try:
            student.model.load_state_dict(state)
        except RuntimeError as error:
            raise ModelLoadError(
                f"{directory / WEIGHTS_FILE}: does not fit config.json ({str(error).splitlines()[0][:200]})"
            ) from None
        student.model.eval()
        return student

    def tensors(self, texts: list[str], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        ids, lengths = self.tokenizer.encode(texts)
        return torch.from_numpy(ids).to(device), torch.from_numpy(lengths).to(device)

    @torch.inference_mode()
    def logits(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """Logits in input order; texts are batched by length so little time goes to padding."""
        self.model.eval()
        device = next(self.model.parameters()).device
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.spec.num_labels), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids, lengths = self.tensors([texts[i] for i in chunk], device)
            out[chunk] = self.model(ids, lengths).float().cpu().numpy()
        return out

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        return torch.softmax(torch.from_numpy(self.logits(texts, batch_size)), dim=-1).numpy()

    def predict(self, texts: list[str], batch_size: int = 64) -> list[str]:
        return [self.label_names[i] for i in self.logits(texts, batch_size).argmax(axis=1)]
