"""The exceptions the command line turns into a clear message and a non-zero exit. A leaf: it imports nothing, so
that every part of the package, the envs included, may raise them."""


class UserError(Exception):
    """Bad input from the user: a flag, a config file, an env id, a checkpoint. Its text is one sentence."""


class EnvFault(UserError):
    """The environment failed under a run: it raised, or returned a NaN or infinite observation or reward. Its text
    names the env and what it did, without the step, which the one who stepped it adds."""


class NonFinite(EnvFault):
    """The environment returned a NaN or infinite observation or reward."""
