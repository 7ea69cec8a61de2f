import re

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
        ("transfer.sources.0.top_p=1.5", "transfer.sources.0.top_p"),
        ("student.arch=transformer", "student.arch"),
        ("student.alpha=2", "student.alpha"),
    ],
)
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError, match=f"--set {override}: bad value for '{field}'"):
        build_config({**BASE, "transfer": {"sources": [{"type": "generate", "n": 5}]}}, [override])


def test_malformed_yaml_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  train: [unclosed\nteacher: {model: m}\n")
    with pytest.raises(ConfigError, match="malformed YAML at line"):
        load_config(path)


def test_missing_required_section():
    with pytest.raises(ConfigError, match="missing required config key 'teacher'"):
        build_config({"data": {"train": "x"}})


def test_generate_source_needs_n():
    with pytest.raises(ConfigError, match="missing required config key 'transfer.sources.0.n'"):
        build_config({**BASE, "transfer": {"sources": [{"type": "generate"}]}})


def test_yaml_round_trip():
    config = build_config(BASE, ["student.arch=cnn", "transfer.sources=[{type: file, path: u.jsonl}]"])
    again = RunConfig.model_validate(yaml.safe_load(config.to_yaml()))
    assert again == config


def test_set_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_overrides(["student.epochs"])


@pytest.mark.parametrize("value", [".inf", ".nan", "-.inf"])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(ConfigError, match="teacher.learning_rate.*finite"):
        build_config(BASE, [f"teacher.learning_rate={value}"])


@pytest.mark.parametrize("key", ["transfer.sources.0.n", "transfer.sources[0].n"])
def test_set_addresses_one_transfer_source(key):
    raw = {**BASE, "transfer": {"sources": [{"type": "file", "path": "u.jsonl"}, {"type": "augment"}]}}
    config = build_config(raw, [f"{key}=200", "transfer.sources[1].copies=3"])
    assert config.transfer.sources[0].n == 200 and config.transfer.sources[1].copies == 3
    assert raw["transfer"]["sources"][0] == {"type": "file", "path": "u.jsonl"}  # the YAML dict is not modified


def test_set_can_append_a_source_and_names_a_bad_index():
    config = build_config(BASE, ["transfer.sources.0.type=augment", "transfer.sources.0.copies=2"])
    assert config.transfer.sources[0].type == "augment" and config.transfer.sources[0].copies == 2
    with pytest.raises(ConfigError, match=r"transfer.sources has 0 entries; use an index from 0 to 0"):
        build_config(BASE, ["transfer.sources.3.n=5"])


def test_a_typo_in_set_is_reported_as_the_set_not_the_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(BASE))
    with pytest.raises(ConfigError) as error:
        load_config(path, ["studnet.epochs=2"])
    assert str(error.value).startswith("--set studnet.epochs=2: unknown config key 'studnet'")
    assert "did you mean 'student'" in str(error.value)
    path.write_text(yaml.safe_dump({**BASE, "studnet": {"epochs": 2}}))
    with pytest.raises(ConfigError, match=f"^{path}: unknown config key 'studnet'"):
        load_config(path, ["student.epochs=3"])


def test_unknown_key_inside_a_source_names_the_source_keys():
    with pytest.raises(ConfigError) as error:
        build_config({**BASE, "transfer": {"sources": [{"type": "file", "path": "u", "text_colum": "t"}]}})
    assert "unknown config key 'transfer.sources.0.text_colum'" in str(error.value)
    assert "did you mean 'transfer.sources.0.text_column'" in str(error.value)


def test_unknown_source_type_lists_the_registered_ones():
    with pytest.raises(ConfigError, match=r"transfer.sources.0.type: expected one of generate, file, augment"):
        build_config({**BASE, "transfer": {"sources": [{"type": "retrieval"}]}})


def test_old_generator_sampling_keys_move_into_the_generate_source():
    raw = {**BASE, "generator": {"top_p": 0.5, "sample_batch_size": 4, "batch_size": 2}}
    raw["transfer"] = {"sources": [{"type": "generate", "n": 5}, {"type": "generate", "n": 6, "top_p": 0.9}]}
    config = build_config(raw)
    assert config.transfer.sources[0].top_p == 0.5 and config.transfer.sources[0].batch_size == 4
    assert config.transfer.sources[1].top_p == 0.9  # a value the source sets itself wins
    assert config.generator.batch_size == 2  # the training batch size stays with the generator


ALIAS_BOMB = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
data:
  train: x.csv
  seed: *e
"""


def test_an_alias_bomb_is_refused_in_one_short_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    with pytest.raises(ConfigError, match="aliases .* expand to more than") as error:
        load_config(path)
    assert len(str(error.value)) < 300 and "\n" not in str(error.value)


def test_a_few_aliases_still_work(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  train: &t x.csv\n  validation: *t\nteacher: {model: m}\n")
    assert load_config(path).data.validation == "x.csv"


def test_a_self_referencing_alias_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: &d\n  train: x.csv\n  label_names: [*d]\n")
    with pytest.raises(ConfigError, match="refers to the value that contains it"):
        load_config(path)


def test_a_bad_value_is_shown_shortened_in_the_message():
    with pytest.raises(ConfigError, match="bad value for 'data.seed'") as error:
        build_config({**BASE, "data": {"train": "x.csv", "seed": ["word"] * 10_000}})
    assert len(str(error.value)) < 300


@pytest.mark.parametrize(
    ("text", "key", "lines"),
    [
        ("student:\n  epochs: 3\nteacher: {model: m}\nstudent:\n  epochs: 5\n", "'student'", "lines 1 and 4"),
        ("teacher:\n  model: m\n  epochs: 1\n  epochs: 2\n", "'epochs'", "lines 3 and 4"),
    ],
)
def test_a_duplicate_key_is_refused_with_both_lines(tmp_path, text, key, lines):
    path = tmp_path / "c.yaml"
    path.write_text("data: {train: x.csv}\n" + text)
    first, second = (int(n) + 1 for n in lines.removeprefix("lines ").split(" and "))
    with pytest.raises(ConfigError, match=f"duplicate key {key} at lines {first} and {second}"):
        load_config(path)


def test_a_merge_key_may_be_overridden_by_an_explicit_key(tmp_path):
    path = tmp_path / "c.yaml"
    text = "data: {train: x.csv}\nteacher:\n  <<: {model: m, epochs: 1}\n  epochs: 2\n"
    path.write_text(text)
    assert load_config(path).teacher.epochs == 2


@pytest.mark.parametrize(
    ("override", "field", "bound"),
    [
        ("evaluate.speed_min_seconds=1e300", "evaluate.speed_min_seconds", "less than or equal to 60"),
        ("student.temperature=1e30", "student.temperature", "less than or equal to 100"),
    ],
)
def test_knobs_that_never_end_or_overflow_have_an_upper_bound(override, field, bound):
    """speed_min_seconds: 1e300 timed forever; temperature: 1e30 made the loss overflow to NaN and the run blamed
    the learning rate."""
    with pytest.raises(ConfigError, match=f"bad value for '{field}': Input should be {bound}"):
        build_config(BASE, [override])


# README writes `auto` where the field's default is None because None means "detect it from the data"; only these
# keys may say so (anywhere else, `auto` in the table would hide a wrong default).
README_AUTO_IS_NONE = {("data", "multi_label"), ("data", "label_names")}


def readme_config_tables() -> dict[str, list[tuple[str, str]]]:
    """The Config reference's `| key | default | meaning |` tables by section: (key cell, default cell) rows."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    reference = text.split("## Config reference", 1)[1].split("\n## ", 1)[0]
    tables: dict[str, list[tuple[str, str]]] = {}
    section = None
    for line in reference.splitlines():
        heading = re.match(r"^\*\*`(\w+)`\*\*", line)
        if heading:
            section = heading.group(1)
        elif section and line.startswith("| `"):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            tables.setdefault(section, []).append((cells[0], cells[1]))
    return tables


def readme_value(cell: str) -> object:
    """A README default cell as a Python value: `none`/`null` -> None, backticks dropped, YAML for the rest."""
    cell = cell.strip().strip("`")
    if cell in ("none", "null"):
        return None
    value = yaml.safe_load(cell)
    if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
        try:
            return float(value)
        except ValueError:
            return value
    return value


def split_defaults(cell: str, count: int) -> list[str]:
    """`10, 2e-3, 64` for three keys; one default for several keys (`test`, `validation` | none) is shared."""
    if count == 1:
        return [cell]
    parts = [part.strip() for part in re.split(r",\s*(?![^\[]*\])", cell)]
    return parts if len(parts) == count else [cell] * count


def test_readme_config_tables_match_the_defaults():
    from enum import Enum

    from gendistill.config import DataConfig, LabelConfig, StudentConfig

    models = {"data": DataConfig, "student": StudentConfig, "label": LabelConfig}
    tables = readme_config_tables()
    assert set(tables) >= set(models), tables.keys()
    checked = 0
    for section, model in models.items():
        for keys_cell, default_cell in tables[section]:
            keys = re.findall(r"`(\w+)`", keys_cell)
            for key, cell in zip(keys, split_defaults(default_cell, len(keys))):
                assert key in model.model_fields, f"README {section}.{key}: no such config key"
                field = model.model_fields[key]
                default = field.default_factory() if field.default_factory is not None else field.default
                default = default.value if isinstance(default, Enum) else default
                if cell.strip() == "auto":
                    assert (section, key) in README_AUTO_IS_NONE and default is None, f"{section}.{key}: auto"
                    continue
                assert readme_value(cell) == default, f"README {section}.{key}: {cell!r}, the code: {default!r}"
                checked += 1
    assert checked >= 30  # the parser found the tables' rows
