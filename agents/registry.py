"""The agents `--agent` can name. Each has the face the trainer needs: act, update (returning detached tensors),
state_dict/load_state_dict, `actor` (observations -> an object with `.mode` and `.sample()`), make_actor, and
its config section. Registering an agent here gives it `--agent NAME`, its flags and its YAML section."""

from typing import Protocol

import torch
from torch import nn

from agents.crossq import CrossQ
from agents.replay_buffer import Batch
from agents.sac import SAC
from agents.td3 import TD3


class Agent(Protocol):
    name: str
    config_class: type  # its section of the config: a frozen dataclass, declared in the agent's own file
    actor: nn.Module
    constants: dict[str, float]  # metrics fixed for the run (e.g. SAC's target entropy), logged at each interval

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor: ...
    def update(self, batch: Batch) -> dict[str, torch.Tensor]: ...
    def grad_norms(self) -> dict[str, torch.Tensor]: ...  # of the gradients the last update left; read at log time
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


AGENTS: dict[str, type] = {SAC.name: SAC, TD3.name: TD3, CrossQ.name: CrossQ}
