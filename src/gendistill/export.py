"""Export a student to ONNX (optionally int8) for torch-free serving with `gendistill.inference.Predictor`.

The graph takes the tokenizer's raw ids: the teacher-vocab id map and the padding rule are baked into it, so a
deployment needs only tokenizer.json + model.onnx and cannot get the mapping wrong. The TorchScript exporter is
used because the torch.export-based one needs onnxscript and the students use no packed sequences or
data-dependent control flow. With int8, only the quantized model ships (model.onnx); the fp32 graph is an
intermediate file and is deleted: export again without --quantize for an fp32 copy.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gendistill.card import write_export_card
from gendistill.errors import GendistillError, ModelLoadError
from gendistill.inference import (
    FORMAT,
    FORMAT_VERSION,
    LABELS_FILE,
    METADATA_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
)
from gendistill.io import read_json, write_json
from gendistill.students import StudentClassifier
from gendistill.students.models import BiLSTMStudent
from gendistill.students.vocab import PAD_ID, UNK_ID

OPSET = 17  # supported by every onnxruntime >= 1.14 and enough for LSTM, Conv, Gather and ReduceMax
QUANTIZATIONS = ("int8",)
# The fp32 graph must match torch closely; a larger gap means a broken export, not rounding.
VERIFY_TOLERANCE = 1e-4


class RawIdStudent(nn.Module):
    """The student behind the tokenizer's raw ids: id map (with one extra sentinel row for empty texts),
    padding forced to [PAD]=0 past each length, and, for the CNN, enough trailing padding that the widest
    filter always fits (the students are exact under padding, so extra [PAD] columns change nothing)."""

    def __init__(self, model: nn.Module, id_map: np.ndarray | None, extra_padding: int = 0):
        super().__init__()
        self.model = model
        self.extra_padding = extra_padding
        table = None if id_map is None else np.append(id_map, UNK_ID).astype(np.int32)  # int32: half the bytes
        self.register_buffer("id_map", None if table is None else torch.from_numpy(table), persistent=False)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        valid = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
        if self.id_map is not None:
            ids = self.id_map[ids.clamp(0, self.id_map.shape[0] - 1)].long()
        ids = torch.where(valid, ids, torch.zeros_like(ids))
        if self.extra_padding:
            ids = F.pad(ids, (0, self.extra_padding), value=PAD_ID)
        return self.model(ids, lengths)


def _onnx_gates(weight: torch.Tensor) -> torch.Tensor:
    """torch orders LSTM gates (input, forget, cell, output); ONNX wants (input, output, forget, cell)."""
    gate_input, forget, cell, output = weight.chunk(4, dim=0)
    return torch.cat([gate_input, output, forget, cell], dim=0)


def _one_lstm_node(model: BiLSTMStudent) -> None:
    """Make `model` (an export-only instance) trace its two recurrences as one ONNX `LSTM` node
    (direction=bidirectional, sequence_lens = lengths).

    The node reverses each text within its own length, as the student does, and replaces the student's reversal
    gathers, two LSTMs and concatenation: measured on the quickstart int8 student, everything but the LSTM kernels
    took half of the graph's time. In torch the node computes the student's own `recurrent_states`, so `verify`
    checks the exported graph against the real student like any other export.
    """
    directions = (model.forward_lstm, model.backward_lstm)
    hidden = model.forward_lstm.hidden_size

    class BidirectionalLSTMNode(torch.autograd.Function):
        @staticmethod
        def forward(ctx, embedded, lengths, weights, recurrences, biases):  # noqa: ARG004
            tracing = torch._C._get_tracing_state()  # the node is traced as one op; its inside must not be
            torch._C._set_tracing_state(None)
            try:
                return BiLSTMStudent.recurrent_states(model, embedded, lengths)  # the class's, not the override
            finally:
                torch._C._set_tracing_state(tracing)

        @staticmethod
        def symbolic(g, embedded, lengths, weights, recurrences, biases):
            time_major = g.op("Transpose", embedded, perm_i=[1, 0, 2])
            sequence_lens = g.op("Cast", lengths, to_i=6)  # int32, as the LSTM op requires
            states, _, _ = g.op(
                "LSTM",
                time_major,
                weights,
                recurrences,
                biases,
                sequence_lens,
                direction_s="bidirectional",
                hidden_size_i=hidden,
                outputs=3,
            )  # [length, 2 directions, batch, hidden]
            batch_major = g.op("Transpose", states, perm_i=[2, 0, 1, 3])
            return g.op("Reshape", batch_major, g.op("Constant", value_t=torch.tensor([0, 0, -1])))

    def recurrent_states(embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        weights = torch.stack([_onnx_gates(lstm.weight_ih_l0) for lstm in directions])
        recurrences = torch.stack([_onnx_gates(lstm.weight_hh_l0) for lstm in directions])
        biases = torch.stack(
            [torch.cat([_onnx_gates(lstm.bias_ih_l0), _onnx_gates(lstm.bias_hh_l0)]) for lstm in directions]
        )
        return BidirectionalLSTMNode.apply(embedded, lengths, weights, recurrences, biases)

    model.recurrent_states = recurrent_states


def wrap_student(student: StudentClassifier) -> tuple[RawIdStudent, int, int]:
    """(wrapper in eval mode on CPU, raw vocabulary size, the raw id an empty text gets). A BiLSTM student is
    switched to its one-node export form: pass a student loaded for export only."""
    id_map = student.tokenizer.id_map
    extra = max(student.spec.cnn_kernel_sizes) - 1 if student.spec.arch == "cnn" else 0
    model = student.model.cpu().eval()
    if isinstance(model, BiLSTMStudent):
        _one_lstm_node(model)
    wrapper = RawIdStudent(model, id_map, extra).eval()
    if id_map is None:
        return wrapper, student.spec.vocab_size, UNK_ID
    return wrapper, len(id_map), len(id_map)  # the sentinel row appended above maps to [UNK]


def resolve_source(source: Path) -> tuple[Path, Path | None, str]:
    """(student folder, run directory or None, the student's key in report.json) for a run directory or a
    student folder (`student/`, `baseline_student/` inside a run, or a standalone one)."""
    if (source / "student" / "config.json").is_file():
        return source / "student", source, "student"
    if (source / "config.json").is_file():
        run_dir = source.parent if (source.parent / "report.json").is_file() else None
        return source, run_dir, source.name if run_dir else "student"
    raise ModelLoadError(f"{source}: no student found (expected a run directory or a student folder)")


def _report_fields(run_dir: Path | None, key: str) -> dict[str, Any]:
    if run_dir is None or not (run_dir / "report.json").is_file():
        return {"config_hash": None, "student_accuracy": None, "student_macro_f1": None}
    try:
        report = read_json(run_dir / "report.json")
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{run_dir / 'report.json'}: cannot read ({error})") from None
    row = report.get(key) or {}
    return {
        "config_hash": report.get("config_hash"),
        "student_accuracy": row.get("accuracy"),
        "student_macro_f1": row.get("macro_f1"),
    }


@contextmanager
def _quiet():
    """Silence the exporter's tracer/LSTM warnings and onnxruntime's 'run pre-processing' log line: they are
    about cases the wrapper already handles, and would only alarm CLI users."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def _example_inputs(raw_vocab: int, width: int, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, raw_vocab, (batch, width), generator=generator)
    lengths = torch.linspace(width, 1, batch).round().long()  # full, partial and length-1 rows
    ids[torch.arange(width)[None, :] >= lengths[:, None]] = PAD_ID
    return ids, lengths


def torch_to_onnx(wrapper: RawIdStudent, path: Path, raw_vocab: int) -> None:
    import onnx

    ids, lengths = _example_inputs(raw_vocab, 7, 3, seed=0)
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            wrapper,
            (ids, lengths),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=["ids", "lengths"],
            output_names=["logits"],
            dynamic_axes={"ids": {0: "batch", 1: "sequence"}, "lengths": {0: "batch"}, "logits": {0: "batch"}},
        )
    onnx.checker.check_model(str(path))


def verify(wrapper: RawIdStudent, path: Path, raw_vocab: int) -> float:
    """Largest |ONNX - torch| logit gap over batches of other sizes and sequence lengths than the export's
    example (a graph that froze a shape fails here); raises if it exceeds VERIFY_TOLERANCE."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for width, batch, seed in ((1, 1, 1), (4, 2, 2), (23, 5, 3)):
        ids, lengths = _example_inputs(raw_vocab, width, batch, seed)
        with torch.no_grad():
            expected = wrapper(ids, lengths).numpy()
        got = session.run(["logits"], {"ids": ids.numpy(), "lengths": lengths.numpy()})[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    if worst > VERIFY_TOLERANCE:
        raise RuntimeError(f"ONNX export check failed: logits differ from torch by {worst:.2e} (a bug; please report)")
    return worst


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8: weights of the embedding Gather, LSTM, MatMul/Gemm stored as int8, activations quantized
    on the fly. Conv stays fp32: onnxruntime's CPU ConvInteger has no int8-weight kernel and CNN filters are
    a small share of the bytes (the embedding dominates)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Gather", "LSTM", "MatMul", "Gemm"],
        )


def _prepare_target(out_dir: Path) -> Path:
    """A fresh temporary folder beside `out_dir`; refuses to later replace a folder that is not an export."""
    is_export_or_empty = out_dir.is_dir() and ((out_dir / METADATA_FILE).exists() or not any(out_dir.iterdir()))
    if out_dir.exists() and not is_export_or_empty:
        raise GendistillError(f"{out_dir}: exists and is not an ONNX export; choose another --out")
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def export_onnx(source: str | Path, out_dir: str | Path, quantize: str | None = None) -> Path:
    """Export the student of `source` (a run directory or a student folder) to `out_dir`; returns out_dir.

    Writes model.onnx (fp32, or int8 with quantize="int8"), tokenizer.json, labels.json and metadata.json.
    The folder is replaced whole only once everything is written and checked.
    """
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise GendistillError(f"--quantize {quantize!r}: expected one of {', '.join(QUANTIZATIONS)}")
    source, out_dir = Path(source), Path(out_dir)
    student_dir, run_dir, key = resolve_source(source)
    student = StudentClassifier.from_pretrained(student_dir)
    wrapper, raw_vocab, empty_id = wrap_student(student)
    tmp = _prepare_target(out_dir)
    try:
        fp32 = tmp / ("model.fp32.onnx" if quantize else MODEL_FILE)
        torch_to_onnx(wrapper, fp32, raw_vocab)
        max_diff = verify(wrapper, fp32, raw_vocab)
        if quantize == "int8":
            quantize_int8(fp32, tmp / MODEL_FILE)
            fp32.unlink()
        shutil.copyfile(student_dir / TOKENIZER_FILE, tmp / TOKENIZER_FILE)
        (tmp / LABELS_FILE).write_text(json.dumps(student.label_names, indent=2) + "\n", encoding="utf-8")
        write_json(
            tmp / METADATA_FILE,
            _metadata(
                student, student_dir, run_dir, key, quantize, empty_id, max_diff, (tmp / MODEL_FILE).stat().st_size
            ),
        )
        write_export_card(tmp, read_json(tmp / METADATA_FILE))  # README.md: the folder is a Hub repo as it is
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _metadata(
    student: StudentClassifier,
    student_dir: Path,
    run_dir: Path | None,
    key: str,
    quantize: str | None,
    empty_id: int,
    max_diff: float,
    size: int,
) -> dict[str, Any]:
    import onnx
    import onnxruntime

    from gendistill import __version__

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "gendistill_version": __version__,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "onnxruntime_version": onnxruntime.__version__,
        "opset": OPSET,
        "source": str(student_dir.resolve()),
        "run_dir": str(run_dir.resolve()) if run_dir else None,
        "student_kind": key,
        **_report_fields(run_dir, key),
        "arch": student.spec.arch,
        "params": student.num_parameters,
        "spec": student.spec.to_dict(),
        "label_names": student.label_names,
        "max_length": student.tokenizer.max_length,
        "min_length": student.tokenizer.min_length,
        "pad_id": PAD_ID,
        "empty_id": empty_id,
        "pruned_teacher_vocab": student.tokenizer.id_map is not None,
        "quantization": quantize,
        "model_bytes": size,
        "fp32_max_abs_diff_vs_torch": max_diff,
        "info": student.info,
        "inputs": {
            "ids": "int64 [batch, sequence] raw tokenizer ids, right-padded with 0",
            "lengths": "int64 [batch] token count per row (>= 1)",
        },
        "outputs": {"logits": "float32 [batch, labels]"},
    }
