"""The one exception the command line turns into a clear message and a non-zero exit."""


class UserError(Exception):
    """Bad input from the user: a flag, a config file, an env id, a checkpoint. Its text is one sentence."""
