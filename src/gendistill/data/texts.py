"""What every predict and fit path accepts as "texts" (and "labels"): one rule, in one torch-free module that the
ONNX predictor can import too.

A batch is any one-dimensional collection: a list, tuple, numpy array, pandas Series, `datasets` column (or any other
iterable). A bare string is an error everywhere, never a batch of its characters: `predict("a text")` would
otherwise return one label per character, and wrapping it silently would hide the mistake of passing one text where
a column was meant. Whole tables (a DataFrame, a `datasets.Dataset`, a dict) are errors that name the column to pass.
"""

from __future__ import annotations

from typing import Any

_BATCH = "a list of strings, or a tuple, numpy array, pandas Series or datasets column of them"


def _sequence(values: Any, what: str) -> list[Any]:
    if isinstance(values, (str, bytes)):
        raise TypeError(f"{what} must be {_BATCH}, not one string; wrap a single text in a list: [text]")
    columns = getattr(values, "column_names", None) or getattr(values, "columns", None)
    if columns is not None and not hasattr(values, "dtype"):  # a DataFrame or a datasets.Dataset, not a column
        names = list(columns)
        example = repr(names[0]) if names else "'text'"
        raise TypeError(
            f"{what}: got a whole table ({type(values).__name__} with columns {names[:10]}); pass one column, "
            f"e.g. table[{example}]"
        )
    if isinstance(values, dict):
        raise TypeError(f"{what}: got a dict; pass {_BATCH}")
    shape = getattr(values, "shape", None)
    if shape is not None and len(shape) != 1:
        raise TypeError(f"{what}: expected a one-dimensional batch, got an array of shape {tuple(shape)}")
    if hasattr(values, "tolist"):  # numpy arrays and pandas Series: Python values, positions not index labels
        return list(values.tolist())
    try:
        return list(values)
    except TypeError:
        raise TypeError(f"{what} must be {_BATCH}; got {type(values).__name__}") from None


def as_texts(texts: Any, what: str = "texts") -> list[str]:
    """`texts` as a list of str; a TypeError saying what was found (and how to fix it) for anything else."""
    values = _sequence(texts, what)
    for index, value in enumerate(values):
        if not isinstance(value, str):
            shown = repr(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise TypeError(f"{what}[{index}] is {type(value).__name__} ({shown}), not a string")
    return values


class EmptyTextError(ValueError):
    """A text with nothing to classify (empty, or whitespace only). Refused rather than labeled: a student answers
    every such text with the same label (its prior for no words), which a caller would take for a prediction."""


def require_words(texts: list[str], what: str = "texts") -> list[str]:
    """`texts` unchanged, or EmptyTextError naming the first empty or whitespace-only one by its index."""
    for index, text in enumerate(texts):
        if not text.strip():
            raise EmptyTextError(
                f"{what}[{index}] is empty or whitespace only: there is nothing to classify; remove it or give it text"
            )
    return texts


def as_labels(labels: Any, count: int, what: str = "labels") -> list[Any]:
    """`labels` as a list of Python values (class names or integer ids), one per text."""
    if isinstance(labels, (str, bytes)):
        raise TypeError(f"{what} must be one label per text (a list, tuple, numpy array or column), not one string")
    values = _sequence(labels, what)
    if len(values) != count:
        raise ValueError(f"{what}: {len(values)} labels for {count} texts; give one label per text")
    return [value.item() if hasattr(value, "item") else value for value in values]  # numpy scalars as Python
