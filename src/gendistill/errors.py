"""Errors a user can cause. The CLI prints them as one line and exits non-zero; anything else is a bug."""


class GendistillError(Exception):
    """A mistake in the user's input, config or environment, with a message that says how to fix it."""


class ConfigError(GendistillError):
    pass


class DataError(GendistillError):
    pass


class ModelLoadError(GendistillError):
    pass


class RunDirError(GendistillError):
    pass


class HubError(GendistillError):
    """The Hugging Face Hub refused or could not be reached for an upload."""


class YieldError(GendistillError):
    """A transfer source kept too few of the texts it drew (its `min_yield`), or no source kept any text."""


class MissingExtra(GendistillError):
    """An optional package is not installed; the message names the pip extra that brings it."""


class ExportDirError(ValueError):
    """The folder is not a usable gendistill ONNX export (a user error, not a bug). A ValueError, not a
    GendistillError: it is what a deployment that uses `Predictor` alone sees; the CLI turns it into a
    ModelLoadError."""
