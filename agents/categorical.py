"""A categorical value: a critic's logits over fixed bins, fit by cross-entropy instead of a squared error; and a
scalar critic read in the same symlog space.

Bins are evenly spaced in symlog(v) = sign(v) log(1 + |v|) (Hafner et al. 2023, DreamerV3; TD-MPC2's critics), so
one support covers returns of any size; or evenly in v, over a fixed range or one that follows the rewards (as
SimbaV2's bins over rewards it scales), which resolves a difference of Q as finely at large Q as at small. A
scalar target is encoded "two-hot": its weight split between the two bins around its place on the axis (symlog of
it, or itself), by closeness, so the encoding's expected bin is that place exactly; a value is decoded as the
expected bin under the softmax of the logits, read back (symexp) from symlog space. With a `smoothing` above zero
the target is instead a Gaussian around its place of that width in bins, integrated over each bin ("HL-Gauss",
Farebrother et al. 2024, who found 0.75 of a bin best).
Classification losses of this kind train value networks better than regression does at scale (Farebrother et al.
2024); XQC and SimbaV2 use categorical critics.
"""

import torch


def symlog(x: torch.Tensor) -> torch.Tensor:
    return x.sign() * x.abs().log1p()


def symexp(x: torch.Tensor) -> torch.Tensor:
    return x.sign() * x.abs().expm1()


class Bins:
    """`count` bins evenly spaced over [-limit, limit] in symlog space (symexp(10) = 22,026: a limit of 10 covers
    every MuJoCo return at gamma 0.99), or in the value itself with `linear`: a bin then resolves the same difference
    of Q at any size, where a symlog bin of 101 over [-10, 10] spans 22% of the value at its place. Linear bins
    over a fixed range need one the task's returns fit; with a `limit` of 0 the range follows the rewards instead
    (`widen`), from [-1, 1] to the widest discounted return the rewards seen could make."""

    def __init__(self, count: int, limit: float, smoothing: float = 0.0, linear: bool = False):
        self.count, self.smoothing, self.linear = count, smoothing, linear
        self.follows = linear and limit == 0
        self.range = torch.tensor([-1.0, 1.0] if self.follows else [-limit, limit])  # (low, high) on the axis

    def to(self, device: torch.device) -> "Bins":
        self.range = self.range.to(device)
        return self

    @torch.no_grad()
    def widen(self, reward: torch.Tensor, discount: torch.Tensor) -> None:
        """Where the range follows the rewards: widen it in place to hold r / (1 - discount) for each (n-step)
        reward of the batch, the return of that reward at every step; the range never narrows."""
        if self.follows:
            bound = reward / (1.0 - discount).clamp(min=1e-3)
            self.range.copy_(torch.stack([torch.minimum(self.range[0], bound.min()),
                                          torch.maximum(self.range[1], bound.max())]))

    def place(self, value: torch.Tensor) -> torch.Tensor:
        """A value's place on the bins' axis, within the range."""
        low, high = self.range.to(value.dtype)
        return torch.maximum(torch.minimum(value if self.linear else symlog(value), high), low)

    def unplace(self, place: torch.Tensor) -> torch.Tensor:
        return place if self.linear else symexp(place)

    def width(self, like: torch.Tensor) -> torch.Tensor:
        low, high = self.range.to(like.dtype)
        return (high - low) / (self.count - 1)

    def centers(self, like: torch.Tensor) -> torch.Tensor:
        index = torch.arange(self.count, device=like.device, dtype=like.dtype)
        return self.range[0].to(like.dtype) + index * self.width(like)

    def two_hot(self, target: torch.Tensor) -> torch.Tensor:
        """(...) -> (..., count): probabilities on the two bins nearest the target's place (one where it falls on
        a bin, the end bin outside the support), max(0, 1 - |position - i|) for bin i at the fractional position."""
        position = (self.place(target) - self.range[0].to(target.dtype)) / self.width(target)
        index = torch.arange(self.count, device=target.device, dtype=target.dtype)
        return (1.0 - (position.unsqueeze(-1) - index).abs()).clamp(min=0.0)

    def hl_gauss(self, target: torch.Tensor) -> torch.Tensor:
        """(...) -> (..., count): the mass of Normal(the target's place, smoothing bins) on each bin, the bins'
        edges halfway between centres, renormalized to sum to one over the support."""
        width = self.width(target)
        edges = torch.cat([self.centers(target) - width / 2, (self.range[1].to(target.dtype) + width / 2)[None]])
        z = (edges - self.place(target).unsqueeze(-1)) / (self.smoothing * width * 2 ** 0.5)
        cdf = torch.special.erf(z)
        mass = cdf[..., 1:] - cdf[..., :-1]
        return mass / mass.sum(dim=-1, keepdim=True)

    def encode(self, target: torch.Tensor) -> torch.Tensor:
        return self.hl_gauss(target) if self.smoothing > 0 else self.two_hot(target)

    def value(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., count) logits -> (...) values: the expected bin, read back (symexp) from symlog space."""
        return self.unplace((logits.softmax(dim=-1) * self.centers(logits)).sum(dim=-1))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (E, B, count) against scalar targets (B,): each member's mean over the batch, summed over the
        members (as the squared loss it replaces). The target is a constant: no gradient reaches it."""
        return -(self.encode(target.detach()) * logits.log_softmax(dim=-1)).sum(dim=-1).mean(dim=-1).sum()


class SymlogScalar:
    """A scalar critic in symlog space (DreamerV3's symlog regression): each critic outputs symlog(Q), fit by the
    squared error to symlog(target), and Q = symexp(output). One scale for every task's returns, as the bins
    have, with a regression's loss. An output is read within [-limit, limit], the bins' range: symexp of an output
    the critic extrapolates far outside its data (an action the actor has pushed there) would overflow, and the
    actor's gradient through it with it."""

    def __init__(self, limit: float = 10.0):
        self.limit = limit

    def value(self, out: torch.Tensor) -> torch.Tensor:
        """(E, B) outputs -> (E, B) values."""
        return symexp(out.clamp(-self.limit, self.limit))

    def loss(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """outputs (E, B) against scalar targets (B,): half the squared error in symlog space, each member's mean
        over the batch, summed over the members (as the squared loss in Q it replaces)."""
        return 0.5 * (out - symlog(target.detach())).square().mean(dim=-1).sum()
