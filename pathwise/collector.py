"""The vector env and the episodes in flight: what the agent sees, the transitions it makes, and what an episode
needs to be put back exactly when a run resumes (the seed it began from and the actions taken since)."""

import numpy as np
import torch
from gymnasium.vector import VectorEnv

from pathwise.envs import success_key


class Collector:
    """Steps `envs` (autoreset disabled: an ended sub-env is reset here, from a seed drawn from the run's
    generator). The same generator draws the random actions of the warm-up phase. With `stagger` (the envs' time
    limit in actions), each sub-env's first episode is truncated here after a part of that limit drawn from the
    generator, uniform over 1 to the limit."""

    def __init__(self, envs: VectorEnv, seed: int, stagger: int = 0):
        self.envs, self.num_envs = envs, envs.num_envs
        self.obs_dim, self.act_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
        self.rng = np.random.default_rng(seed)
        n = self.num_envs
        self.obs: np.ndarray | None = None  # (N, O), the observation each sub-env is in
        self.ep_return, self.ep_length = np.zeros(n), np.zeros(n, dtype=np.int64)
        self.episode_seeds = np.zeros(n, dtype=np.int64)  # the seed each sub-env's current episode began from
        self.episode_actions: list[list[np.ndarray]] = [[] for _ in range(n)]  # (A,) each, since that reset
        self.restarted = np.zeros(n, dtype=bool)  # sub-envs whose episode a resume could not put back
        self.stagger = stagger
        self.cut: np.ndarray | None = None  # (N,) the length at which each first episode is cut; 0: not cut

    def from_agent(self, action: torch.Tensor) -> np.ndarray:
        return action.cpu().numpy()

    def random_actions(self) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, (self.num_envs, self.act_dim)).astype(np.float32)

    def start(self) -> None:
        if self.obs is None:
            self.start_episodes(np.ones(self.num_envs, dtype=bool))
            if self.stagger:
                self.cut = self.stagger - self.rng.integers(self.stagger, size=self.num_envs)

    def step(self, action: np.ndarray) -> tuple[tuple, list[tuple[float, int, float | None]],
                                                 list[tuple[int, int, str]]]:
        """Step every sub-env with `action` (N, A): the transitions (obs, action, reward, next_obs, terminated,
        ended), each with leading dimension N (ended: the episode ended, by termination or time limit); (return,
        length, success) of each episode that ended (success: what the env's info said of it at its last step,
        `is_success` or `success`; None where it says nothing of success); and (sub-env, transitions, what) of
        each episode dropped because the env returned a non-finite number (`--on-nonfinite drop`: its transition
        here, zeroed, ends it and is one of them). Ended and dropped sub-envs are reset at once, so `obs` is
        always the observation the next action answers."""
        next_obs, reward, terminated, truncated, info = self.envs.step(action)
        if self.cut is not None:  # the staggered first episodes end as at a time limit of their own
            truncated = truncated | (self.ep_length + 1 == self.cut)
        # Autoreset is off: next_obs is the true next observation also where a time limit cut the episode,
        # so a truncated episode bootstraps from it and only `terminated` stops bootstrapping.
        bad = info.get("_nonfinite")
        done = terminated | truncated if bad is None else terminated | truncated | bad
        # The resets first, before anything here changes: if one fails (an EnvFault), the collector is as it was
        # before the step, which is what the run then saves.
        reset = self._reset(done) if done.any() else None
        transition = (self.obs, action, reward, next_obs, terminated, done)
        self.obs = next_obs
        if self.cut is not None:
            self.cut[done] = 0
            self.cut = self.cut if self.cut.any() else None
        self.ep_return += reward
        self.ep_length += 1
        for actions, a in zip(self.episode_actions, action):
            actions.append(a)
        finished, dropped, ended = [], [], done
        if bad is not None:
            dropped = [(int(i), int(self.ep_length[i]), str(info["nonfinite"][i])) for i in np.flatnonzero(bad)]
            ended = done & ~bad
        if reset is not None:
            key = success_key(info)
            success = info.get(key)
            said = info.get(f"_{key}", np.zeros(self.num_envs, bool)) if success is not None else None
            finished = [(float(self.ep_return[i]), int(self.ep_length[i]),
                         float(success[i]) if said is not None and said[i] else None) for i in np.flatnonzero(ended)]
            self._begin(done, *reset)
        return transition, finished, dropped

    def start_episodes(self, mask: np.ndarray) -> None:
        """Reset the sub-envs in `mask`, each from a new seed drawn from the run's generator."""
        self._begin(mask, *self._reset(mask))

    def _reset(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reset the sub-envs in `mask` from seeds drawn from the generator: (the seeds, the observations). Only
        the generator moves, and it moves back if the reset fails."""
        before = self.rng.bit_generator.state
        seeds = self.rng.integers(2**31 - 1, size=len(mask))
        try:
            reset_obs, _ = self.envs.reset(seed=[int(s) if m else None for s, m in zip(seeds, mask)],
                                           options={"reset_mask": mask})
        except BaseException:
            self.rng.bit_generator.state = before
            raise
        return seeds, reset_obs

    def _begin(self, mask: np.ndarray, seeds: np.ndarray, reset_obs: np.ndarray) -> None:
        """The episodes the reset began: their seeds, first observations, and returns and actions from zero."""
        self.episode_seeds[mask] = seeds[mask]
        self.obs = reset_obs if self.obs is None else np.where(mask[:, None], reset_obs, self.obs)
        self.ep_return[mask], self.ep_length[mask] = 0.0, 0
        for i in np.flatnonzero(mask):
            self.episode_actions[i] = []

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state,
                "obs": torch.from_numpy(np.array(self.obs)), "ep_return": torch.from_numpy(self.ep_return.copy()),
                "ep_length": torch.from_numpy(self.ep_length.copy()),
                "episode_seeds": torch.from_numpy(self.episode_seeds.copy()),
                "cut": torch.from_numpy(np.zeros(self.num_envs, np.int64) if self.cut is None else self.cut.copy()),
                "episode_actions": [torch.from_numpy(np.array(a, dtype=np.float32).reshape(-1, self.act_dim))
                                    for a in self.episode_actions]}

    def load_state_dict(self, state: dict) -> None:
        """Put each sub-env back where the checkpoint left it: reset it from its episode's seed and replay the
        episode's actions, then check that it reached the observation saved. An episode that cannot be put back
        (an env that is not deterministic, or async sub-envs, which cannot be stepped one at a time) starts
        anew, from the generator as it was saved."""
        self.rng.bit_generator.state = state["rng"]
        self.ep_return, self.ep_length = state["ep_return"].numpy().copy(), state["ep_length"].numpy().copy()
        self.episode_seeds = state["episode_seeds"].numpy().copy()
        cut = state["cut"].numpy().copy() if "cut" in state else None
        self.cut = cut if cut is not None and cut.any() else None
        self.episode_actions = [list(a.numpy()) for a in state["episode_actions"]]
        saved_obs = state["obs"].numpy()
        # A full reset first, so that the vector env holds an observation for every sub-env (a later reset_mask
        # reset stacks them all); the replays below then move single sub-envs on from there.
        self.obs, _ = self.envs.reset(seed=[int(s) for s in self.episode_seeds])
        sub_envs = getattr(self.envs, "envs", None)  # SyncVectorEnv's own envs
        rebuilt = np.zeros(self.num_envs, dtype=bool)
        for j in range(self.num_envs if sub_envs is not None else 0):
            obs, _ = sub_envs[j].reset(seed=int(self.episode_seeds[j]))
            for action in self.episode_actions[j]:
                obs, *_ = sub_envs[j].step(action)
            if np.array_equal(np.asarray(obs), saved_obs[j]):
                self.obs[j], rebuilt[j] = saved_obs[j], True
        self.restarted = ~rebuilt
        if not rebuilt.all():
            self.start_episodes(~rebuilt)
