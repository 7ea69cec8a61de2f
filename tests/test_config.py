import pytest
import yaml

from gendistill.config import RunConfig, build_config, load_config, parse_overrides
from gendistill.errors import ConfigError

BASE = {"data": {"train": "t.jsonl"}, "teacher": {"model": "m"}}


def test_precedence_defaults_then_yaml_then_set(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**BASE, "student": {"epochs": 7, "hidden_dim": 32}}))
    config = load_config(path, ["student.epochs=3", "transfer.filters.min_words=5"])
    assert config.student.epochs == 3  # --set beats YAML
    assert config.student.hidden_dim == 32  # YAML beats default
    assert config.student.embedding_dim == 64  # default
    assert config.transfer.filters.min_words == 5


def test_unknown_key_suggests_nearest():
    with pytest.raises(ConfigError, match=r"unknown config key 'student.hiden_dim'.*did you mean 'student.hidden_dim'"):
        build_config({**BASE, "student": {"hiden_dim": 3}})


@pytest.mark.parametrize(
    "override, field",
    [
        ("student.hidden_dim=-1", "student.hidden_dim"),
        ("generator.top_p=1.5", "generator.top_p"),
        ("student.arch=transformer", "student.arch"),
        ("student.alpha=2", "student.alpha"),
    ],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=f"bad value for '{field}'"):
        build_config(BASE, [override])


def test_malformed_yaml_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  train: [unclosed\nteacher: {model: m}\n")
    with pytest.raises(ConfigError, match="malformed YAML at line"):
        load_config(path)


def test_missing_required_section():
    with pytest.raises(ConfigError, match="missing required config key 'teacher'"):
        build_config({"data": {"train": "x"}})


def test_generate_source_needs_n():
    with pytest.raises(ConfigError, match="needs n"):
        build_config({**BASE, "transfer": {"sources": [{"type": "generate"}]}})


def test_yaml_round_trip():
    config = build_config(BASE, ["student.arch=cnn", "transfer.sources=[{type: file, path: u.jsonl}]"])
    again = RunConfig.model_validate(yaml.safe_load(config.to_yaml()))
    assert again == config


def test_set_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_overrides(["student.epochs"])
