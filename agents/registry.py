"""The agents `--agent` can name, and the face each shows the trainer.

An agent is its own file (its config section, a frozen dataclass with a `name`, `make_agent` and `make_actor`;
its losses; its update) and one name in `AgentConfig` below: the run's config holds exactly one of these
sections, told apart by its `name`. Flags, the YAML section, checkpoints, `load_policy` and export follow.
"""

import typing
from typing import Protocol

import torch
from torch import nn

from pathwise.agents.batch import Batch
from pathwise.agents.crossq import CrossQConfig
from pathwise.agents.sac import SACConfig
from pathwise.agents.td3 import TD3Config
from pathwise.agents.tqc import TQCConfig

AgentConfig = SACConfig | TD3Config | CrossQConfig | TQCConfig

# name -> the agent's config section; the agent itself is made by `section.make_agent(...)`.
AGENTS: dict[str, type] = {section.name: section for section in typing.get_args(AgentConfig)}


class Agent(Protocol):
    name: str
    actor: nn.Module  # observations -> a distribution-like object with `.mode` and `.sample()`
    constants: dict[str, float]  # metrics fixed for the run (e.g. SAC's target entropy), logged at each interval
    # The names of the agent's methods that the speed layer (pathwise/speed) may wrap: those computing losses from
    # tensors (compiled, run under autocast), and the gradient steps' device work, which keeps no Python state
    # (a policy-delay count lives in `update`, around them), replayed from CUDA graphs.
    loss_methods: tuple[str, ...]
    step_methods: tuple[str, ...]

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor: ...
    def update(self, batch: Batch) -> dict[str, torch.Tensor]: ...  # detached tensors; no host sync
    def grad_norms(self) -> dict[str, torch.Tensor]: ...  # of the gradients the last update left; read at log time
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...
