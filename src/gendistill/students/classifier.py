"""`StudentClassifier`: a trained student with its tokenizer and label names; save/load (local folders and Hugging
Face Hub repos) and predict.

Hub support follows `huggingface_hub`'s ModelHubMixin interface (`save_pretrained`, `from_pretrained(id_or_path,
revision=, token=, cache_dir=, local_files_only=, force_download=)`, `push_to_hub(repo_id, ...)`) without inheriting
from it: the mixin builds config.json from `__init__`'s JSON-able arguments (ours are a tokenizer and an nn.Module),
keeps a stale README.md on re-save, and turns a Hub repo without config.json into a log line. Here config.json is the
student's own, the model card is rewritten on every save from the run's report, and a repo that cannot be found
is a one-line ModelLoadError.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from gendistill.artifacts.calibration import (
    CALIBRATION_FILE,
    Calibration,
    CalibrationError,
    check_min_confidence,
    read_calibration,
    write_calibration,
)
from gendistill.artifacts.card import card_text, read_run, student_facts, write_card
from gendistill.artifacts.hub import push_folder
from gendistill.artifacts.resolve import (
    CONFIG_FILE,
    ID_MAP_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    identify,
    resolve_model_dir,
)
from gendistill.data.texts import as_texts
from gendistill.errors import ModelLoadError
from gendistill.evaluation.multilabel import DEFAULT_THRESHOLD, check_thresholds, decide
from gendistill.evaluation.report import Report
from gendistill.io import atomic_path, write_json
from gendistill.students.architectures import StudentNetwork, StudentSpec, build_network, spec_from_dict
from gendistill.students.vocab import StudentTokenizer

if TYPE_CHECKING:
    from gendistill.config import RunConfig
    from gendistill.evaluation.report import Report


class StudentClassifier:
    """A student network plus everything needed to go from raw texts to labels."""

    def __init__(
        self,
        spec: StudentSpec,
        tokenizer: StudentTokenizer,
        label_names: list[str],
        model: StudentNetwork | None = None,
        info: dict | None = None,
        *,
        multi_label: bool = False,
        thresholds: list[float] | None = None,
    ):
        self.spec = spec
        self.tokenizer = tokenizer
        self.label_names = list(label_names)
        self.model = model if model is not None else build_network(spec)
        self.info = dict(info or {})
        # a multi-label student answers each label as a yes/no question (a sigmoid per label), deciding "yes" where
        # the probability reaches that label's threshold (tuned on a held-out split; 0.5 until then)
        self.multi_label = multi_label
        self.thresholds = list(thresholds) if thresholds is not None else None
        self.run_dir: Path | None = None  # the run it was loaded from (its report feeds the model card)
        # fitted by the evaluate stage on a held-out split (calibration.json); None: probabilities as trained
        self.calibration: Calibration | None = None

    @property
    def num_parameters(self) -> int:
        return sum(parameter.numel() for parameter in self.model.parameters())

    def save_pretrained(
        self,
        directory: str | Path,
        *,
        report: Report | str | Path | None = None,
        config: RunConfig | None = None,
        repo_id: str | None = None,
    ) -> None:
        """Write the student folder: config.json, model.safetensors, tokenizer.json (+ id_map.safetensors) and a
        model card (README.md) with the test metrics of `report` (default: the report of the run it was loaded
        from, if any), and calibration.json when the student has a calibration (a stale one is removed: it was fitted
        to other weights). Any folder written here loads with `from_pretrained` and is a valid Hub model repo."""
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
                **({"multi_label": True, "thresholds": self.decision_thresholds} if self.multi_label else {}),
            },
        )
        if self.calibration is not None:
            write_calibration(directory, self.calibration)
        else:
            (directory / CALIBRATION_FILE).unlink(missing_ok=True)
        self.write_card(directory, report=report, config=config, repo_id=repo_id)

    def write_card(
        self,
        directory: str | Path,
        *,
        report: Report | str | Path | None = None,
        config: RunConfig | None = None,
        repo_id: str | None = None,
    ) -> Path:
        """README.md (the model card) for this student; `report` (a Report or a report.json path) and `config`
        default to those of the run it was loaded from, if known."""

        if isinstance(report, (str, Path)):
            report = Report.read(report)
        if report is None or config is None:
            run_report, run_config = read_run(self.run_dir)
            report, config = report or run_report, config or run_config
        return write_card(directory, card_text(student_facts(self), report, config, repo_id))

    def push_to_hub(
        self,
        repo_id: str,
        *,
        report: Report | str | Path | None = None,
        config: RunConfig | None = None,
        commit_message: str = "Upload gendistill student",
        private: bool | None = None,
        token: str | None = None,
        branch: str | None = None,
        create_pr: bool = False,
    ) -> str:
        """Save this student with its model card into a temporary folder and upload it to the Hub repo `repo_id`
        (created if needed) as one commit; returns the commit URL."""

        with tempfile.TemporaryDirectory(prefix="gendistill-push-") as tmp:
            self.save_pretrained(tmp, report=report, config=config, repo_id=repo_id)
            return push_folder(
                tmp,
                repo_id,
                commit_message=commit_message,
                private=private,
                token=token,
                branch=branch,
                create_pr=create_pr,
            )

    @classmethod
    def from_pretrained(
        cls,
        id_or_path: str | Path,
        *,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | Path | None = None,
        local_files_only: bool = False,
        force_download: bool = False,
    ) -> StudentClassifier:
        """Load a student from a local folder or a Hub repo id (`user/name`), the latter through the Hugging Face
        cache: downloaded when online, read from the cache alone with HF_HUB_OFFLINE=1 or `local_files_only`."""
        local = Path(id_or_path).expanduser().is_dir()
        directory = resolve_model_dir(
            id_or_path,
            "student",
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            force_download=force_download,
        )
        where = directory if local else f"Hub repo {str(id_or_path)!r} ({directory})"
        artifact = identify(directory)
        if artifact is None or artifact.kind != "student":
            raise _not_a_student(where, CONFIG_FILE, local)
        try:
            config = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
            spec = spec_from_dict(config["spec"])
            pruned = bool(config["pruned_teacher_vocab"])
            multi_label = bool(config.get("multi_label", False))
            thresholds = (
                check_thresholds(config["thresholds"], spec.num_labels, f"{directory / CONFIG_FILE} thresholds")
                if multi_label
                else None
            )
        except (KeyError, TypeError, json.JSONDecodeError) as error:
            raise ModelLoadError(f"{where}: invalid student config.json ({error})") from None
        except ValueError as error:  # thresholds outside (0, 1) or not one per label
            raise ModelLoadError(str(error)) from None
        # checked by name first: the loaders' FileNotFoundError carries no file name (safetensors, tokenizers)
        for name in (TOKENIZER_FILE, WEIGHTS_FILE, *([ID_MAP_FILE] if pruned else [])):
            if (directory / name).is_file():
                continue
            if name == ID_MAP_FILE:
                raise ModelLoadError(
                    f"{directory / ID_MAP_FILE} is missing: config.json says this student maps the teacher's "
                    "vocabulary to its rows through that file; copy it back from where the student was saved, or "
                    "re-save or retrain the student"
                )
            raise _not_a_student(where, name, local)
        try:
            tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
            id_map = load_numpy(str(directory / ID_MAP_FILE))["id_map"] if pruned else None
            state = load_file(str(directory / WEIGHTS_FILE))
        except FileNotFoundError as error:  # removed while loading
            raise _not_a_student(where, Path(error.filename or str(error)).name, local) from None
        except (KeyError, TypeError) as error:
            raise ModelLoadError(f"{where}: invalid student file ({error})") from None
        except Exception as error:  # noqa: BLE001 - safetensors/tokenizers raise their own types on damaged files
            raise ModelLoadError(
                f"{where}: a student file is damaged ({type(error).__name__}: {str(error)[:200]}); re-export or "
                "retrain it"
            ) from None
        _require_usable(state, id_map, spec.vocab_size, directory)
        if len(config["label_names"]) != spec.num_labels:
            raise ModelLoadError(
                f"{where}: config.json names {len(config['label_names'])} labels but the network has "
                f"{spec.num_labels} outputs; the folder is inconsistent: retrain or re-save it"
            )
        student_tokenizer = StudentTokenizer(tokenizer, config["max_length"], id_map, config.get("min_length", 1))
        student = cls(
            spec,
            student_tokenizer,
            config["label_names"],
            info=config.get("info"),
            multi_label=multi_label,
            thresholds=thresholds,
        )
        try:
            student.model.load_state_dict(state)
        except RuntimeError as error:
            raise ModelLoadError(
                f"{directory / WEIGHTS_FILE}: does not fit config.json ({str(error).splitlines()[0][:200]})"
            ) from None
        student.model.eval()
        student.run_dir = artifact.run_dir
        try:
            student.calibration = read_calibration(directory)
        except CalibrationError as error:
            raise ModelLoadError(f"{error}; delete it (or rerun `gendistill evaluate RUN_DIR`)") from None
        return student

    def tensors(self, texts: list[str], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        ids, lengths = self.tokenizer.encode(as_texts(texts))
        return torch.from_numpy(ids).to(device), torch.from_numpy(lengths).to(device)

    @torch.inference_mode()
    def logits(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Logits in input order; texts are batched by length so little time goes to padding.

        `texts` is a batch: a list, tuple, numpy array, pandas Series or datasets column of strings. A bare string
        is a TypeError (wrap one text as [text]), never a batch of its characters."""
        texts = as_texts(texts)
        self.model.eval()
        device = next(self.model.parameters()).device
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.spec.num_labels), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids, lengths = self.tensors([texts[i] for i in chunk], device)
            out[chunk] = self.model(ids, lengths).float().cpu().numpy()
        return out

    @property
    def temperature(self) -> float:
        """The calibration temperature the probabilities are divided by (1.0 without a calibration)."""
        return self.calibration.temperature if self.calibration is not None else 1.0

    @property
    def decision_thresholds(self) -> list[float]:
        """A multi-label student's per-label thresholds (0.5 for each label until tuned)."""
        return self.thresholds if self.thresholds is not None else [DEFAULT_THRESHOLD] * self.spec.num_labels

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64, calibrated: bool = True) -> np.ndarray:
        """softmax(logits / T) with the stored temperature T (calibrated=False, or no calibration.json: T = 1). A
        multi-label student gives one independent probability per label (sigmoid), so a row need not sum to 1."""
        logits = torch.from_numpy(self.logits(texts, batch_size))
        if self.multi_label:
            return torch.sigmoid(logits).numpy()
        temperature = self.temperature if calibrated else 1.0
        return torch.softmax(logits / temperature, dim=-1).numpy()

    def predict(
        self, texts: Sequence[str], batch_size: int = 64, min_confidence: float | None = None
    ) -> list[str | None] | list[list[str]]:
        """Labels; with `min_confidence` (in (0, 1)), None in place of the label of a text whose calibrated top
        probability is below it: selective prediction, the caller defers those texts (to a person, the teacher).
        A multi-label student answers the list of labels that apply to each text (possibly empty), each label
        deciding at its own threshold."""
        if self.multi_label:
            if min_confidence is not None:
                raise ValueError(
                    "min_confidence is for single-label students; a multi-label one has per-label thresholds"
                )
            decisions = decide(self.predict_proba(texts, batch_size), self.decision_thresholds)
            return [[self.label_names[i] for i in np.flatnonzero(row)] for row in decisions]
        if min_confidence is None:
            return [self.label_names[i] for i in self.logits(texts, batch_size).argmax(axis=1)]
        threshold = check_min_confidence(min_confidence)
        probabilities = self.predict_proba(texts, batch_size)
        return [self.label_names[int(row.argmax())] if row.max() >= threshold else None for row in probabilities]


def _not_a_student(where: str | Path, missing: str, local: bool) -> ModelLoadError:
    """A folder without the student's `missing` file; a Hub repo may hold an ONNX export instead."""
    hint = "" if local else "; an ONNX export loads with gendistill.artifacts.inference.Predictor.from_pretrained"
    return ModelLoadError(f"{where}: not a gendistill student ({missing} missing){hint}")


def _require_usable(
    state: dict[str, torch.Tensor], id_map: np.ndarray | None, vocab_size: int, directory: Path
) -> None:
    """Refuse what would otherwise answer silently wrong: weights holding NaN or infinity (a diverged training: every
    prediction would be a NaN probability and an arbitrary label) and an id map pointing outside the embedding table
    (the export would accept it and every prediction of such a token would fail)."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelLoadError(
                f"{directory / WEIGHTS_FILE}: the weights are NaN or infinite (first: {name!r}; did training "
                "diverge?); retrain the student, e.g. with a lower learning rate"
            )
    if id_map is not None and id_map.size and (int(id_map.min()) < 0 or int(id_map.max()) >= vocab_size):
        raise ModelLoadError(
            f"{directory / ID_MAP_FILE}: maps token ids to rows {int(id_map.min())}..{int(id_map.max())}, outside the "
            f"student's {vocab_size}-row embedding table; the folder is damaged: retrain or re-save the student"
        )
