"""pathwise: the machinery that runs the agents of `agents`: the command line and config, the training loop,
checkpoints, logging, evaluation, export and sweeps.

    from pathwise import load_policy    # a saved policy: NumPy in, actions in the env's bounds out

The names below are imported when first used, so that `import pathwise` stays light.
"""

__version__ = "0.1.0"
__all__ = ["Policy", "export_policy", "load_policy"]


def __getattr__(name: str):
    if name in __all__:
        from pathwise import policy

        return getattr(policy, name)
    raise AttributeError(f"module 'pathwise' has no attribute {name!r}")
