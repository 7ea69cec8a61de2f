"""Export a student to ONNX (optionally int8) for torch-free serving with `gendistill.artifacts.inference.Predictor`.

The graph takes the tokenizer's raw ids: the teacher-vocab id map and the padding rule are baked into it, so a
deployment needs only tokenizer.json + model.onnx and cannot get the mapping wrong. The TorchScript exporter is
used because the torch.export-based one needs onnxscript and the students use no packed sequences or
data-dependent control flow. With int8, only the quantized model ships (model.onnx); the fp32 graph is an
intermediate file and is deleted: export again without --quantize for an fp32 copy. Every export is checked: the fp32
graph against torch, the int8 graph for finite logits that do not depend on the rest of the batch. Then each graph is
measured against torch on the run's test texts (artifacts.parity): metadata.json and the card carry the result.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import warnings
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from gendistill import __version__
from gendistill.artifacts import extras, parity
from gendistill.artifacts.calibration import read_calibration, write_calibration
from gendistill.artifacts.card import write_export_card
from gendistill.artifacts.resolve import (
    FORMAT,
    FORMAT_VERSION,
    LABELS_FILE,
    METADATA_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    artifact_at,
)
from gendistill.errors import GendistillError, ModelLoadError
from gendistill.evaluation.report import Report
from gendistill.io import read_json, write_json
from gendistill.pipeline.layout import RunLayout
from gendistill.students.classifier import StudentClassifier
from gendistill.students.vocab import PAD_ID, UNK_ID

OPSET = 17  # supported by every onnxruntime >= 1.14 and enough for LSTM, Conv, Gather and ReduceMax
QUANTIZATIONS = ("int8",)
# The fp32 graph must match torch closely; a larger gap means a broken export, not rounding.
VERIFY_TOLERANCE = 1e-4
# A text's int8 logits alone and inside a batch: the same up to float summation order (measured on the quickstart
# students: 0 for the BiLSTM and CNN, 5e-7 for the bag, as in fp32); the dynamic int8 used before moved them by 0.22.
BATCH_TOLERANCE = 1e-5
INT8_MAX = 127


class RawIdStudent(nn.Module):
    """The student behind the tokenizer's raw ids: id map (with one extra sentinel row for empty texts),
    padding forced to [PAD]=0 past each length, and enough trailing padding that every input reaches the network's
    minimum length (the CNN's widest filter; the students are exact under padding, so extra [PAD] columns change
    nothing, and the traced graph cannot pad only the short inputs as the network's own forward does)."""

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


def wrap_student(student: StudentClassifier) -> tuple[RawIdStudent, int, int]:
    """(wrapper around the network's ONNX form, in eval mode on CPU; raw vocabulary size; the raw id an empty text
    gets)."""
    id_map = student.tokenizer.id_map
    network = student.model.cpu().eval()
    wrapper = RawIdStudent(network.onnx_form(), id_map, network.min_length - 1).eval()
    if id_map is None:
        return wrapper, student.spec.vocab_size, UNK_ID
    return wrapper, len(id_map), len(id_map)  # the sentinel row appended above maps to [UNK]


def _report_fields(run_dir: Path | None, key: str) -> dict[str, Any]:
    """The run's measurements of this student, read through the typed report (gendistill.evaluation.report)."""
    path = RunLayout(run_dir).report_json if run_dir is not None else None
    if path is None or not path.is_file():
        return {"config_hash": None, "student_accuracy": None, "student_macro_f1": None}
    try:
        report = Report.read(path)
    except (OSError, ValueError, ValidationError) as error:
        raise ModelLoadError(f"{path}: cannot read ({str(error).splitlines()[0][:200]})") from None
    row = getattr(report, key, None) if key in ("student", "baseline_student") else None
    return {
        "config_hash": report.config_hash,
        "student_accuracy": row.accuracy if row else None,
        "student_macro_f1": row.macro_f1 if row else None,
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


RETRAIN = "did training diverge? Retrain the student, e.g. with a lower learning rate, and export again"


def _require_finite_weights(wrapper: RawIdStudent) -> None:
    broken = sum(int((~torch.isfinite(parameter)).sum()) for parameter in wrapper.parameters())
    if broken:
        raise ModelLoadError(f"cannot export: {broken:,} of the student's weights are NaN or infinite ({RETRAIN})")


def _require_finite(logits: np.ndarray, what: str) -> None:
    """Refuse NaN/Inf logits with one clear error: no gap can vouch for them (max(0.0, nan) is 0.0)."""
    if not np.isfinite(logits).all():
        raise ModelLoadError(f"cannot export: {what} gives NaN or infinite logits with finite weights ({RETRAIN})")


def verify(wrapper: RawIdStudent, path: Path, raw_vocab: int) -> float:
    """Largest |ONNX - torch| logit gap over batches of other sizes and sequence lengths than the export's
    example (a graph that froze a shape fails here); raises if it exceeds VERIFY_TOLERANCE, and raises
    ModelLoadError if a weight, the torch logits or the ONNX logits are NaN/Inf (a NaN gap would pass as 0.0)."""
    import onnxruntime as ort

    _require_finite_weights(wrapper)  # also a NaN row of the embedding table that the inputs below never read
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for width, batch, seed in ((1, 1, 1), (4, 2, 2), (23, 5, 3)):
        ids, lengths = _example_inputs(raw_vocab, width, batch, seed)
        with torch.no_grad():
            expected = wrapper(ids, lengths).numpy()
        _require_finite(expected, "the student")
        got = session.run(["logits"], {"ids": ids.numpy(), "lengths": lengths.numpy()})[0]
        _require_finite(got, "the exported ONNX graph")
        worst = max(worst, float(np.abs(got - expected).max()))
    if not worst <= VERIFY_TOLERANCE:
        raise RuntimeError(f"ONNX export check failed: logits differ from torch by {worst:.2e} (a bug; please report)")
    return worst


def verify_int8(path: Path, raw_vocab: int) -> float:
    """Check the int8 graph: finite logits, and each row's logits the same alone (cut to its own length) as inside
    a batch of longer and shorter rows. Returns the largest batch-vs-alone gap; raises above BATCH_TOLERANCE."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ids, lengths = _example_inputs(raw_vocab, 23, 7, seed=4)
    ids, lengths = ids.numpy(), lengths.numpy()
    batched = session.run(["logits"], {"ids": ids, "lengths": lengths})[0]
    _require_finite(batched, "the int8 ONNX graph")
    alone = np.concatenate(
        [
            session.run(["logits"], {"ids": ids[i : i + 1, :n], "lengths": lengths[i : i + 1]})[0]
            for i, n in enumerate(lengths)
        ]
    )
    worst = float(np.abs(batched - alone).max())
    if not worst <= BATCH_TOLERANCE:
        raise RuntimeError(f"int8 export check failed: a text's logits depend on its batch by {worst:.2e} (a bug)")
    return worst


def _int8(weight: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8: (q, scale) with weight ~= q * scale, one fp32 scale per index along `axes` (shaped to
    broadcast against q), |q| <= 127, and 0 stored exactly (the [PAD] row stays zero)."""
    if not np.isfinite(weight).all():
        raise ModelLoadError("cannot quantize: the student has NaN or infinite weights; retrain it")
    reduce = tuple(axis for axis in range(weight.ndim) if axis not in axes)
    peak = np.abs(weight).max(axis=reduce, keepdims=True) if reduce else np.abs(weight)
    scale = np.where(peak > 0, peak / INT8_MAX, 1.0).astype(np.float32)
    return np.clip(np.rint(weight / scale), -INT8_MAX, INT8_MAX).astype(np.int8), scale


def _weight_axes(node: Any, index: int, weights: dict[str, np.ndarray]) -> tuple[int, ...] | None:
    """The per-channel axes of input `index` of `node` if it is a float weight to store as int8, else None: the
    embedding table per row, LSTM W/R per direction and gate row, Gemm/MatMul per output unit, Conv per filter."""
    name = node.input[index] if index < len(node.input) else ""
    if name not in weights:
        return None
    if node.op_type == "Gather" and index == 0:
        return (0,)
    if node.op_type == "LSTM" and index in (1, 2):
        return (0, 1)
    if node.op_type == "Gemm" and index == 1:
        transposed = any(a.name == "transB" and a.i for a in node.attribute)
        return (0,) if transposed else (weights[name].ndim - 1,)
    if node.op_type == "MatMul" and index == 1:
        return (weights[name].ndim - 1,)
    if node.op_type == "Conv" and index == 1:
        return (0,)
    return None


def _static_int8_convolutions(graph: Any, weights: dict[str, np.ndarray]) -> tuple[list[Any], dict[str, Any], set]:
    """The CNN's convolutions as QLinearConv with fixed scales: a text's features never depend on its batch.

    The input is the embedding gathered straight from a per-tensor int8 table (its scale is fixed); the weights are
    int8 per filter with an int32 bias; the output scale covers [0, bound], where bound is the largest value any
    filter can reach on any token sequence (per window position, the best token; computed from the weights, so no
    calibration data and no saturation), and negative outputs clamp to 0, which is the ReLU that follows.
    Measured on the quickstart CNN (1 thread): 1.4x the fp32 export's examples/s at batch 1 and 2.4x at batch 64, as
    fast as `quantize_static`'s calibrated QDQ graph; int8 weights with fp32 convolutions were no faster than fp32.
    Returns (the graph's nodes with these replacements, new initializers by name, names of replaced initializers);
    ([], {}, set()) unless the graph has the CNN's shape: Gather(table) -> Transpose -> Convs with constant weights.
    """
    from onnx import helper, numpy_helper

    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    convs = [node for node in graph.node if node.op_type == "Conv"]
    producer = {output: node for node in graph.node for output in node.output}
    transpose = producer.get(convs[0].input[0]) if convs else None
    gather = producer.get(transpose.input[0]) if transpose is not None and transpose.op_type == "Transpose" else None
    if (
        gather is None
        or gather.op_type != "Gather"
        or gather.input[0] not in weights
        or consumers[gather.output[0]] != [transpose]
        or any(c.op_type != "Conv" for c in consumers[transpose.output[0]])
        or any(len(c.input) < 3 or c.input[1] not in weights or c.input[2] not in weights for c in convs)
    ):
        return [], {}, set()
    table = gather.input[0]
    q_table, table_scale = _int8(weights[table], ())
    table_scale = float(np.asarray(table_scale).reshape(-1)[0])
    embeddings = q_table.astype(np.float32) * table_scale
    # uint8 activations (int8 + 128): onnxruntime's u8s8 convolution ran 3x (batch 1) to 14x (batch 64) faster here
    initializers = {
        f"{table}_uint8": numpy_helper.from_array((q_table.astype(np.int16) + 128).astype(np.uint8), f"{table}_uint8"),
        f"{table}_scale": numpy_helper.from_array(np.float32(table_scale), f"{table}_scale"),
        f"{table}_zero": numpy_helper.from_array(np.uint8(128), f"{table}_zero"),
    }
    replaced = {table}
    new_gather = helper.make_node("Gather", [f"{table}_uint8", gather.input[1]], gather.output, name=gather.name)
    nodes: dict[str, list[Any]] = {gather.output[0]: [new_gather]}  # keyed by output: names may be empty
    for conv in convs:
        weight, bias = weights[conv.input[1]], weights[conv.input[2]]
        q_weight, weight_scale = _int8(weight, (0,))
        weight_scale = weight_scale.reshape(-1)
        unit = weight_scale * np.float32(table_scale)  # one integer step of the accumulator, per filter
        q_bias = np.rint(bias / unit).astype(np.int32)
        # the best token per window position: [filters * width, vocab] scores, max over the vocabulary
        dequantized = q_weight.astype(np.float32) * weight_scale[:, None, None]
        scores = dequantized.transpose(0, 2, 1).reshape(-1, weight.shape[1]) @ embeddings.T
        best = scores.max(axis=1).reshape(weight.shape[0], weight.shape[2]).sum(axis=1) + q_bias * unit
        bound = max(float(best.max()), 1e-6)
        prefix = conv.input[1]
        for name, value in (
            (f"{prefix}_int8", q_weight),
            (f"{prefix}_scale", weight_scale.astype(np.float32)),
            (f"{prefix}_zero", np.zeros(len(weight_scale), np.int8)),
            (f"{prefix}_bias_int32", q_bias),
            (f"{prefix}_out_scale", np.float32(bound / 255)),
            (f"{prefix}_out_zero", np.uint8(0)),  # uint8 0..255 spans [0, bound]
        ):
            initializers[name] = numpy_helper.from_array(np.asarray(value), name)
        replaced |= {conv.input[1], conv.input[2]}
        quantized = f"{conv.output[0]}_int8"
        attributes = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        nodes[conv.output[0]] = [
            helper.make_node(
                "QLinearConv",
                [
                    conv.input[0],
                    f"{table}_scale",
                    f"{table}_zero",
                    f"{prefix}_int8",
                    f"{prefix}_scale",
                    f"{prefix}_zero",
                    f"{prefix}_out_scale",
                    f"{prefix}_out_zero",
                    f"{prefix}_bias_int32",
                ],
                [quantized],
                name=f"{conv.name}_int8",
                **attributes,
            ),
            helper.make_node(
                "DequantizeLinear",
                [quantized, f"{prefix}_out_scale", f"{prefix}_out_zero"],
                conv.output,
                name=f"{conv.name}_dequantize",
            ),
        ]
    return (
        [node for original in graph.node for node in nodes.get(original.output[0], [original])],
        initializers,
        replaced,
    )


def quantize_int8(source: Path, target: Path) -> None:
    """int8 whose answer for a text never depends on the rest of the batch (no dynamic activation quantization).

    The dynamic int8 used before (onnxruntime `quantize_dynamic`) quantizes activations with the range of the whole
    batch: 5 of the quickstart BiLSTM's 400 test labels changed between batch and one-at-a-time (bag student: 5).
    Instead, a hand-written rewrite (onnxruntime's quantizers offer no weight-only int8 for LSTM and Gather):

    - every float weight (embedding table, LSTM W/R, Gemm/MatMul, Conv) is stored as int8 with one fp32 scale per
      row, gate row, output unit or filter, and restored in the graph by Cast and Mul. onnxruntime folds those into
      fp32 constants when the session loads, so the file is int8-sized while the arithmetic is the fp32 graph's: as
      fast as fp32 and as batch-independent (without graph optimizations, the restore runs every call: slower only).
    - the CNN's convolutions run in int8 with fixed scales (`_static_int8_convolutions`).

    Measured on the quickstart (1 thread, examples/s at batch 1 / 64): the BiLSTM runs at fp32 speed, 0.67x / 0.72x
    the old dynamic int8 (no onnxruntime LSTM kernel quantizes without batch-wide scales: DynamicQuantizeLSTM is the
    only one); the bag at fp32 speed, as fast as the old; the CNN 1.4x / 2.4x fp32. Labels equal fp32's on 99.5%
    (BiLSTM), 100% (CNN), 99.25% (bag) of the test texts. Not used: DequantizeLinear on the weights, which
    onnxruntime does not fold (it keeps QDQ pairs for its fusions), so it ran every call: 0.8x fp32 (BiLSTM); and
    `quantize_static`, which leaves the LSTM fp32 and needs calibration texts that a student folder lacks.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {
        init.name: numpy_helper.to_array(init) for init in graph.initializer if init.data_type == onnx.TensorProto.FLOAT
    }
    nodes, initializers, replaced = _static_int8_convolutions(graph, weights)
    nodes = nodes or list(graph.node)
    restore = []
    for node in nodes:
        for index in range(len(node.input)):
            name = node.input[index]
            axes = _weight_axes(node, index, weights)
            if axes is None or name in replaced:
                continue
            q_weight, scale = _int8(weights[name], axes)
            initializers[f"{name}_int8"] = numpy_helper.from_array(q_weight, f"{name}_int8")
            initializers[f"{name}_scale"] = numpy_helper.from_array(scale, f"{name}_scale")
            replaced.add(name)
            restore += [
                helper.make_node(
                    "Cast", [f"{name}_int8"], [f"{name}_float"], name=f"{name}_cast", to=onnx.TensorProto.FLOAT
                ),
                helper.make_node("Mul", [f"{name}_float", f"{name}_scale"], [name], name=f"{name}_restore"),
            ]
    kept = [init for init in graph.initializer if init.name not in replaced]
    del graph.initializer[:]
    graph.initializer.extend(kept + list(initializers.values()))
    del graph.node[:]
    graph.node.extend(restore + nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(target))


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
    out_dir = Path(out_dir)
    artifact = artifact_at(Path(source), ("run", "student"))
    extras.require("export")
    student_dir, run_dir, key = artifact.folder, artifact.run_dir, artifact.report_key
    student = StudentClassifier.from_pretrained(student_dir)
    wrapper, raw_vocab, empty_id = wrap_student(student)
    tmp = _prepare_target(out_dir)
    try:
        fp32 = tmp / ("model.fp32.onnx" if quantize else MODEL_FILE)
        torch_to_onnx(wrapper, fp32, raw_vocab)
        max_diff = verify(wrapper, fp32, raw_vocab)
        if quantize == "int8":
            quantize_int8(fp32, tmp / MODEL_FILE)
            verify_int8(tmp / MODEL_FILE, raw_vocab)
        shutil.copyfile(student_dir / TOKENIZER_FILE, tmp / TOKENIZER_FILE)
        calibration = read_calibration(student_dir)  # already checked when the student loaded
        if calibration is not None:
            write_calibration(tmp, calibration)
        (tmp / LABELS_FILE).write_text(json.dumps(student.label_names, indent=2) + "\n", encoding="utf-8")
        metadata = _metadata(
            student, student_dir, run_dir, key, quantize, empty_id, max_diff, (tmp / MODEL_FILE).stat().st_size
        )
        write_json(tmp / METADATA_FILE, metadata)  # the Predictors that measure parity read it
        metadata["parity"] = export_parity(student, tmp, fp32.name, quantize, run_dir)
        if quantize:
            fp32.unlink()
        write_json(tmp / METADATA_FILE, metadata)
        write_export_card(tmp, read_json(tmp / METADATA_FILE))  # README.md: the folder is a Hub repo as it is
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def export_parity(
    student: StudentClassifier, folder: Path, fp32_file: str, quantize: str | None, run_dir: Path | None
) -> dict[str, Any] | None:
    """artifacts.parity's record for this export: torch, the fp32 graph and (quantized) the int8 one on the run's
    first parity.MAX_TEXTS test texts, through the Predictor a deployment uses (its tokenization included); None
    without a test set (a student folder, or a run without one)."""
    test_set = parity.run_test_set(run_dir)
    if test_set is None:
        return None
    texts, gold = test_set
    inference = extras.load("gendistill.artifacts.inference", "inference")  # onnxruntime: present once exporting
    logits = {parity.TORCH: student.logits(texts)}
    graphs = {parity.ONNX_FP32: fp32_file} | ({parity.ONNX_INT8: MODEL_FILE} if quantize == "int8" else {})
    for name, file in graphs.items():
        with _quiet():
            logits[name] = inference.Predictor(folder, threads=1, model_file=file).logits(texts)
    return {
        "texts": len(texts),
        "source": "the run's test set",
        "shipped": parity.ONNX_INT8 if quantize == "int8" else parity.ONNX_FP32,
        "models": parity.measure(
            logits, student.label_names, gold, student.decision_thresholds if student.multi_label else None
        ),
    }


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
        "recurrent": student.model.recurrent,
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
        # multi-label: sigmoid per label, "yes" where it reaches the label's threshold (tuned on held-out data)
        **({"multi_label": True, "thresholds": student.decision_thresholds} if student.multi_label else {}),
        # the temperature probabilities are divided by, and the confidence threshold chosen on held-out data
        # (calibration.json beside model.onnx; None when the run fitted none)
        "calibration": student.calibration.to_dict() if student.calibration is not None else None,
    }
