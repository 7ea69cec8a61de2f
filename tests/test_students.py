"""Students: every architecture x init trains; padding never changes a text's logits; save/load round-trips (also
of folders the previous version saved); the config's defaults are the networks'; the trainer logs whether it
distilled; teacher-init embeddings and vocabulary pruning match naive per-token computations."""

import json
from collections import Counter

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker
from conftest import LABELS, labeled, train_tiny_student
from tokenizers import Tokenizer
from transformers import AutoModel, AutoTokenizer

from gendistill.config import StudentConfig
from gendistill.students.architectures import ARCHITECTURES, StudentSpec, spec_from_dict
from gendistill.students.building import make_student, spec_from_config
from gendistill.students.classifier import StudentClassifier
from gendistill.students.example_store import ExampleStore
from gendistill.students.static import encode_tokens, reduce_and_weight
from gendistill.students.trainer import train_student
from gendistill.students.vocab import UNK_ID, prune_teacher_vocab


@pytest.mark.parametrize("arch", ["bilstm", "cnn", "bag"])
@pytest.mark.parametrize("init", ["random", "teacher"])
def test_each_architecture_and_init_learns(arch, init, tiny_teacher_dir):
    test_texts, test_gold = labeled(10, 1)
    student, stats = train_tiny_student(arch, init, tiny_teacher_dir)
    accuracy = np.mean(student.logits(test_texts).argmax(axis=1) == np.asarray(test_gold))
    assert stats["steps"] == 15 * 8
    assert accuracy >= 0.8, f"{arch}/{init} reached only {accuracy:.2f} on an easy task"
    assert student.info["init"] == init


@pytest.mark.parametrize(
    ("arch", "pooling"), [("bilstm", "max"), ("bilstm", "mean_max"), ("cnn", "max"), ("bag", "max")]
)
def test_logits_do_not_depend_on_batch_padding(arch, pooling):
    texts, _ = labeled(5, 0)
    config = StudentConfig(
        arch=arch, init="random", embedding_dim=8, hidden_dim=8, cnn_kernel_sizes=[2, 3], pooling=pooling
    )
    student = make_student(config, texts + ["short", "a much longer text " * 5], LABELS, seed=0)
    batch = student.logits(["short", "a much longer text " * 5, texts[0]], batch_size=3)
    single = np.concatenate([student.logits([t]) for t in ["short", "a much longer text " * 5, texts[0]]])
    np.testing.assert_allclose(batch, single, atol=1e-5)


@pytest.mark.parametrize("init", ["random", "teacher"])
def test_save_load_round_trip(tmp_path, init, tiny_teacher_dir):
    texts, gold = labeled(5, 0)
    config = StudentConfig(init=init, embedding_dim=8, hidden_dim=8, epochs=1)
    student = make_student(
        config, texts, LABELS, seed=0, teacher_dir=tiny_teacher_dir, teacher_base=str(tiny_teacher_dir)
    )
    student.save_pretrained(tmp_path / "s")
    loaded = StudentClassifier.from_pretrained(tmp_path / "s")
    probe = texts[:4] + ["completely unseen zebra words"]
    np.testing.assert_allclose(student.logits(probe), loaded.logits(probe), atol=1e-6)
    assert loaded.predict(probe) == student.predict(probe)
    assert loaded.label_names == LABELS and loaded.num_parameters == student.num_parameters
    assert not list((tmp_path / "s").glob("*.bin")) and not list((tmp_path / "s").glob("*.pt"))


@pytest.mark.parametrize("arch", ["bilstm", "cnn", "bag"])
def test_the_default_config_builds_the_default_spec(arch):
    """One default per network field: the config's default is the spec's (hidden_dim once had two, 96 and 128)."""
    config = StudentConfig(arch=arch)
    spec = spec_from_config(config, vocab_size=100, num_labels=3)
    assert spec == ARCHITECTURES.get(arch).spec_class(arch=arch, vocab_size=100, num_labels=3)
    configured = config.model_dump(mode="json")
    for name, value in spec.to_dict().items():
        if name not in ("arch", "vocab_size", "num_labels"):
            assert value == configured[name], name


def test_a_student_folder_of_the_previous_version_loads(tmp_path):
    """Its config.json spec holds every architecture's fields (pooling for a CNN, kernel sizes for a bag): the
    other architectures' fields are dropped and the student predicts as before; a field nobody owns is an error."""
    texts, _ = labeled(5, 0)
    student = make_student(StudentConfig(arch="bag", init="random", embedding_dim=8, hidden_dim=8), texts, LABELS, 0)
    student.save_pretrained(tmp_path / "s")
    saved = json.loads((tmp_path / "s" / "config.json").read_text())
    bag = StudentSpec(arch="bag", vocab_size=student.spec.vocab_size, num_labels=3, embedding_dim=8, hidden_dim=8)
    assert saved["spec"] == bag.to_dict()
    saved["spec"].update(cnn_kernel_sizes=[3, 4, 5], pooling="max")  # as the previous version wrote it
    (tmp_path / "s" / "config.json").write_text(json.dumps(saved))
    loaded = StudentClassifier.from_pretrained(tmp_path / "s")
    assert loaded.spec == student.spec
    np.testing.assert_array_equal(loaded.logits(texts), student.logits(texts))
    assert spec_from_dict({**saved["spec"], "arch": "cnn"}).cnn_kernel_sizes == [3, 4, 5]
    with pytest.raises(TypeError, match="colour"):
        spec_from_dict({**saved["spec"], "colour": "blue"})


class HparamRecorder(GeneralTracker):
    """An experiment tracker that keeps the hyperparameters each training loop logs."""

    name = "recorder"
    requires_logging_directory = False

    def __init__(self):
        super().__init__()
        self.hparams: list[dict] = []

    @property
    def tracker(self):
        return self

    def store_init_configuration(self, values: dict) -> None:
        self.hparams.append(values)

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        pass


def test_the_logged_distilled_flag_says_whether_the_student_learnt_from_a_teacher(tmp_path):
    """On the example-store path the stages use: a store with the teacher's logits is distillation, one without
    (the labeled-only baseline) is cross-entropy."""
    texts, gold = labeled(4, 0)
    config = StudentConfig(arch="bag", init="random", embedding_dim=8, hidden_dim=8, epochs=1)
    logits = np.zeros((len(texts), len(LABELS)), np.float32)
    for name, chunk, distilled in (("kd", (texts, logits, gold), True), ("ce", (texts, None, gold), False)):
        student = make_student(config, texts, LABELS, 0)
        store = ExampleStore.build(tmp_path / name, [chunk], student.tokenizer.encode, len(LABELS))
        recorder = HparamRecorder()
        train_student(student, store, config, Accelerator(cpu=True, log_with=[recorder]), seed=0)
        assert [hparams["distilled"] for hparams in recorder.hparams] == [distilled], name


def test_pruning_keeps_every_token_of_the_texts_and_maps_unknowns(tiny_teacher_dir):
    hf = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    tokenizer = Tokenizer.from_str(hf.backend_tokenizer.to_str())
    texts, _ = labeled(5, 0)
    id_map, kept, counts = prune_teacher_vocab(tokenizer, texts, 64, vocab_size=10_000, unk_id=hf.unk_token_id)
    used = {i for t in texts for i in tokenizer.encode(t, add_special_tokens=False).ids}
    assert set(kept) == used - {hf.unk_token_id}
    assert sorted(id_map[kept].tolist()) == list(range(2, len(kept) + 2))  # each kept token has its own row
    unused = [i for i in range(len(id_map)) if i not in used]
    assert unused and all(id_map[i] == UNK_ID for i in unused)
    # a cap keeps the most frequent tokens
    _, capped, _ = prune_teacher_vocab(tokenizer, texts, 64, vocab_size=5, unk_id=hf.unk_token_id)
    assert capped == [token for token, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:3]


def test_static_embeddings_match_naive_per_token_computation(tiny_teacher_dir):
    hf = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    token_ids = [5, 17, 42, 83]  # letters, ##letters and words of the 84-token tiny vocabulary
    fast = encode_tokens(str(tiny_teacher_dir), hf, token_ids, batch_size=3)
    model = AutoModel.from_pretrained(tiny_teacher_dir).eval()
    for row, token in enumerate(token_ids):
        with torch.no_grad():
            states = model(input_ids=torch.tensor([[hf.cls_token_id, token, hf.sep_token_id]])).last_hidden_state[0]
        naive = states.mean(dim=0).numpy()
        np.testing.assert_allclose(fast[row], naive, atol=1e-5)


def test_reduce_and_weight_pca_and_sif():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 12))
    reduced = reduce_and_weight(vectors, 4, None, None)
    assert reduced.shape == (50, 4) and abs(reduced.std() - 1) < 1e-5
    frequencies = np.arange(50, dtype=float)
    weighted = reduce_and_weight(vectors, 4, frequencies, 1e-3)
    p = frequencies / frequencies.sum()
    np.testing.assert_allclose(weighted, reduced * (1e-3 / (1e-3 + p))[:, None], rtol=1e-5, atol=1e-6)
    assert reduce_and_weight(vectors[:3], 8, None, None).shape == (3, 8)  # fewer tokens than dims: zero-padded


def test_counts_are_used_for_sif(tiny_teacher_dir):
    from gendistill.students.static import teacher_embedding_matrix

    hf = AutoTokenizer.from_pretrained(tiny_teacher_dir)
    matrix, _ = teacher_embedding_matrix(str(tiny_teacher_dir), hf, [5, 6, 7, 8, 9], Counter({5: 100, 6: 1}), 4, 1e-3)
    assert matrix.shape == (7, 4) and not matrix[0].any()  # [PAD] row is zero
    assert np.linalg.norm(matrix[2]) < np.linalg.norm(matrix[3])  # the frequent token is down-weighted


def test_mean_max_pooling_reads_out_both_and_round_trips(tmp_path):
    texts, _ = labeled(5, 0)
    config = StudentConfig(init="random", embedding_dim=8, hidden_dim=12, pooling="mean_max")
    student = make_student(config, texts, LABELS, seed=0)
    assert student.model.hidden.in_features == 4 * 12  # max and mean of the 2 x hidden BiLSTM states
    student.save_pretrained(tmp_path / "s")
    loaded = StudentClassifier.from_pretrained(tmp_path / "s")
    assert loaded.spec.pooling == "mean_max"
    np.testing.assert_allclose(student.logits(texts), loaded.logits(texts), atol=1e-6)


def test_nearest_rows_picks_the_closest_direction_after_centring():
    from gendistill.students.static import nearest_rows

    common = np.full(4, 10.0)  # a shared offset (the [CLS]/[SEP] part) that would make every pair look alike
    kept = common + np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    unseen = common + np.array([[0, 0.9, 0.1, 0], [0.8, 0, 0, 0.1], [0, 0, 2.0, 0]])
    assert nearest_rows(kept, unseen).tolist() == [1, 0, 2]


def test_unseen_tokens_nearest_maps_every_word_piece_to_a_trained_row(tiny_teacher_dir):
    texts, _ = labeled(5, 0)
    probe = [" ".join(texts[3:])]  # words of the fixture vocabulary that the three training texts lack
    common = dict(embedding_dim=8, hidden_dim=8, epochs=1)
    teacher = {"teacher_dir": tiny_teacher_dir, "teacher_base": str(tiny_teacher_dir)}
    unk = make_student(StudentConfig(**common, unseen_tokens="unk"), texts[:3], LABELS, 0, **teacher)
    nearest = make_student(StudentConfig(**common, unseen_tokens="nearest"), texts[:3], LABELS, 0, **teacher)
    assert nearest.spec.vocab_size == unk.spec.vocab_size  # no extra rows: unseen tokens reuse kept ones
    unk_ids, _ = unk.tokenizer.encode(probe)
    nearest_ids, lengths = nearest.tokenizer.encode(probe)
    assert (unk_ids[0, : lengths[0]] == UNK_ID).any()  # the default sends some of these pieces to [UNK]
    assert (nearest_ids[0, : lengths[0]] >= 2).all()  # nearest sends each to a kept token's row
    kept_rows = unk_ids[0, : lengths[0]] >= 2
    np.testing.assert_array_equal(nearest_ids[0, : lengths[0]][kept_rows], unk_ids[0, : lengths[0]][kept_rows])
    assert nearest.info["unseen_mapped"] > 0
