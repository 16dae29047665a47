"""pathwise: continuous-control reinforcement learning with pathwise policy gradients. `pathwise.agents` is the
math (each agent's losses and update), `pathwise.envs` makes environments, and the rest is the machinery that runs
them: the command line and config, the training loop, checkpoints, logging, evaluation, export and sweeps.

    from pathwise import load_policy    # a saved policy: NumPy in, actions in the env's bounds out

The names below are imported when first used, so that `import pathwise` stays light.
"""

import sys
from importlib.util import spec_from_file_location
from pathlib import Path

__version__ = "0.1.0"
__all__ = ["Policy", "export_policy", "load_policy"]

_CHECKOUT = Path(__file__).resolve().parent.parent


class _CheckoutFolders:
    """A checkout keeps agents/ and envs/ at its top, beside pathwise/ (installed, setuptools puts them inside the
    package): run from a checkout that is not installed, they import as pathwise.agents and pathwise.envs all the
    same, and nothing else of the checkout's top becomes part of the package. It is asked first: where another
    checkout is installed in editable mode, its finder would otherwise serve that checkout's agents and envs beside
    this one's pathwise."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name in ("pathwise.agents", "pathwise.envs"):
            folder = _CHECKOUT / name.split(".")[1]
            return spec_from_file_location(name, folder / "__init__.py", submodule_search_locations=[str(folder)])
        return None


if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "agents" / "__init__.py").is_file() \
        and not (Path(__file__).parent / "agents").exists():
    sys.meta_path.insert(0, _CheckoutFolders)


def __getattr__(name: str):
    if name in __all__:
        from pathwise import policy

        return getattr(policy, name)
    raise AttributeError(f"module 'pathwise' has no attribute {name!r}")
