import numpy as np
import torch

from pathwise.normalizer import ObsNormalizer


def test_running_statistics_equal_those_of_all_observations_seen():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, (n, 4)).astype(np.float32) for n in (1, 5, 64, 7)]
    normalizer = ObsNormalizer(4)
    for batch in batches:
        normalizer.update(torch.from_numpy(batch))
    seen = np.concatenate(batches)
    np.testing.assert_allclose(normalizer.mean.numpy(), seen.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(normalizer.var.numpy(), seen.var(0), rtol=1e-3, atol=1e-3)
    out = normalizer(torch.from_numpy(seen))
    np.testing.assert_allclose(out.mean(0).numpy(), 0.0, atol=1e-3)
    np.testing.assert_allclose(out.std(0, unbiased=False).numpy(), 1.0, atol=1e-3)


def test_normalized_observations_are_clipped():
    normalizer = ObsNormalizer(1, clip=5.0)
    normalizer.update(torch.zeros(100, 1))
    assert normalizer(torch.tensor([[1e6], [-1e6]])).flatten().tolist() == [5.0, -5.0]
