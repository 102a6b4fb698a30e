"""The error types digitlab raises for anything a user can cause.

Every one is a ``ValueError`` subclass whose message names the file or field,
what was expected and what was found, so the CLI prints it as one line and
exits with status 2.
"""


class DigitlabError(ValueError):
    """Base class of every user-facing digitlab error."""


class DataError(DigitlabError):
    """A data file or folder is missing, malformed, or fails its checksum."""


class FetchError(DataError):
    """MNIST could not be obtained from any source."""


class ConfigError(DigitlabError):
    """A configuration value (CLI flag, config field) is invalid."""


class RunError(DigitlabError):
    """A run folder is missing, incomplete or unreadable."""


class ImageError(DigitlabError):
    """An image given for prediction cannot be used."""
