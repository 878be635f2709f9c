"""The latent cache of the diffusion family: the same posterior samples as encoding every step,
the encoder not called again for a volume it has seen, flips as their own entries, bounded memory."""

from __future__ import annotations

import pytest
import torch

from medgen_cli.families.diffusion.latent_cache import LatentCache, volume_key


@pytest.fixture(scope="module")
def ae() -> torch.nn.Module:
    from monai.networks.nets import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(spatial_dims=3, in_channels=1, out_channels=1, channels=(8, 8), latent_channels=2,
                         num_res_blocks=1, norm_num_groups=4, attention_levels=(False, False)).eval()


class Counting:
    def __init__(self, ae: torch.nn.Module) -> None:
        self.ae, self.volumes = ae, 0

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.volumes += x.shape[0]
        return self.ae.encode(x)


def test_cached_samples_equal_the_posterior_sample_of_the_same_seed(ae: torch.nn.Module) -> None:
    x = torch.rand(3, 1, 8, 8, 8)
    cache, enc = LatentCache(2**20), Counting(ae)
    with torch.no_grad():
        # MONAI's own sample (encode_stage_2_inputs) fills ε in the encoder output's memory order,
        # which depends on the backend (permuted with two oneDNN threads, and then torch also
        # consumes the stream differently); the reference draws the same seed contiguously.
        mu, sigma = ae.encode(x)
        torch.manual_seed(5)
        ref = mu + torch.randn(sigma.shape) * sigma
        after_ref = torch.rand(4)
        torch.manual_seed(5)
        first = cache.sample(enc, x)
        after_first = torch.rand(4)
        torch.manual_seed(5)
        again = cache.sample(enc, x)
    # The same posterior and the same ε: one batch encode vs one volume at a time differ only by
    # float summation order inside the convolutions (~1e-7 relative here).
    torch.testing.assert_close(first, ref, rtol=1e-5, atol=1e-6)
    assert torch.equal(after_first, after_ref)  # the stream is left where a contiguous draw leaves it
    assert torch.equal(again, first)  # hits return the stored moments bit for bit
    # three misses in two chunks of MISS_CHUNK = 2 (the second padded); the hits encode nothing
    assert enc.volumes == 4 and cache.misses == 3 and cache.hits == 3 and len(cache) == 3


def test_a_flipped_volume_is_its_own_entry_and_memory_is_bounded(ae: torch.nn.Module) -> None:
    x = torch.rand(1, 1, 8, 8, 8)
    flipped = torch.flip(x, [2])
    assert volume_key(x[0]) != volume_key(flipped[0]) and volume_key(x[0]) == volume_key(x[0].clone())
    enc = Counting(ae)
    per_entry = 2 * 2 * 4**3 * 4  # mu and sigma, 2 latent channels of 4³, float32
    cache = LatentCache(per_entry)  # room for one
    with torch.no_grad():
        mu_x, _ = cache.moments(enc, x)
        mu_f, _ = cache.moments(enc, flipped)
        cache.moments(enc, x)
        cache.moments(enc, flipped)
        ref_f, _ = ae.encode(flipped)
    assert len(cache) == 1 and cache.bytes == per_entry
    assert enc.volumes == 3 * 2  # x once (then stored), the flip every time (no room); chunks of 2
    torch.testing.assert_close(mu_f, ref_f)
    assert not torch.allclose(mu_x, mu_f)


def test_a_cached_value_depends_on_its_volume_only(ae: torch.nn.Module) -> None:
    """Whichever batch meets a volume first (and whatever it is chunked with), its moments are the
    same bits: a resumed run, whose cache starts empty, computes what the first run stored."""
    v, others = torch.rand(1, 1, 8, 8, 8), torch.rand(3, 1, 8, 8, 8)
    with torch.no_grad():
        alone, _ = LatentCache(2**20).moments(ae.encode, v)                       # padded chunk
        paired, _ = LatentCache(2**20).moments(ae.encode, torch.cat([others[:1], v]))  # second in its chunk
        third, _ = LatentCache(2**20).moments(ae.encode, torch.cat([others, v, v]))   # a third chunk, twice
    assert torch.equal(alone[0], paired[1]) and torch.equal(alone[0], third[3]) and torch.equal(third[3], third[4])


def test_off_encodes_the_whole_batch_every_time(ae: torch.nn.Module) -> None:
    x = torch.rand(2, 1, 8, 8, 8)
    enc, cache = Counting(ae), LatentCache(0)
    with torch.no_grad():
        torch.manual_seed(1)
        ref = ae.encode_stage_2_inputs(x)
        torch.manual_seed(1)
        got = cache.sample(enc, x)
        cache.sample(enc, x)
    assert torch.equal(got, ref) and enc.volumes == 4 and len(cache) == 0
