"""The one exception type for mistakes a user can fix from the command line."""


class ConfigError(ValueError):
    """A bad setting: the message names the key, the value and what is accepted."""
