"""Exceptions raised to users. Each message names the offending file, line, key or value."""


class LtrrError(Exception):
    """Base class of every error ltrr raises on purpose."""


class ConfigError(LtrrError, ValueError):
    """A configuration file or parameter is invalid."""


class NotFittedError(LtrrError, RuntimeError):
    """A component was used (retrieve, predict, save) before it was fitted or loaded."""


class DataError(LtrrError, ValueError):
    """An input file (catalog, queries, qrels, click log) is malformed."""


class UnknownComponentError(LtrrError, KeyError):
    """A registry lookup named a component that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnknownEventError(LtrrError, KeyError):
    """Feedback referred to an event id the event log has never seen."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class FeedbackExpiredError(LtrrError, ValueError):
    """Feedback arrived after the configured late-feedback window of its event closed."""


class PersistenceError(LtrrError):
    """A saved directory is missing, corrupt, of another type or of another format version."""


class IncompatibleEventError(LtrrError, ValueError):
    """Feedback refers to a decision this engine cannot learn from (it was logged by an engine
    with another plan menu or context size, e.g. before a reload)."""
