"""Making environments: checked at the door, actions rescaled so the agent always speaks [-1, 1]."""

from pathwise.envs.batched import make_batched_env
from pathwise.envs.make import make_env, make_vector_env, obs_columns, obs_keys, space_signature, success_key

__all__ = ["make_batched_env", "make_env", "make_vector_env", "obs_columns", "obs_keys", "space_signature",
           "success_key"]
