"""The error a bad config raises, in a module of its own so that every layer can raise it
without importing the config (``kdbench.config`` re-exports it)."""


class ConfigError(ValueError):
    """A config that does not fit the schema; the message says what was expected."""
