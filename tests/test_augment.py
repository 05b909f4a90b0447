"""Batched augmentations: seeds, per-scan parameters, and each transform's effect."""

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

from benchmarks.blur_matmul import blur_by_matmul
from yaware.augment import (
    POLICIES,
    CropResize,
    Cutout,
    Flip,
    GaussianBlur,
    GaussianNoise,
    build_policy,
)
from yaware.augment.transforms import resize_trilinear
from yaware.errors import ConfigError

SHAPE = (13, 15, 11)


def _batch(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, *SHAPE, generator=torch.Generator().manual_seed(seed)) * 3 + 1


@pytest.mark.parametrize("name", POLICIES)
def test_same_seed_same_views_and_shape_kept(name):
    x = _batch()
    before = x.clone()
    a, b = build_policy(name, SHAPE, seed=7)(x), build_policy(name, SHAPE, seed=7)(x)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert torch.equal(x, before), "the input batch must not be modified in place"
    if name != "none":
        assert not torch.equal(a, build_policy(name, SHAPE, seed=8)(x))


def test_every_view_is_z_scored_first():
    out = build_policy("none", SHAPE, seed=0)(_batch())
    assert torch.allclose(out.mean(dim=(1, 2, 3, 4)), torch.zeros(6), atol=1e-5)
    assert torch.allclose(out.std(dim=(1, 2, 3, 4)), torch.ones(6), atol=1e-5)


@pytest.mark.parametrize(
    "transform",
    [
        Flip(p=0.0),
        GaussianBlur(p=0.0),
        GaussianNoise(p=0.0),
        Cutout(SHAPE, (3, 3, 3), p=0.0),
        CropResize(SHAPE, (9, 11, 8), p=0.0),
    ],
)
def test_probability_zero_is_identity(transform):
    x = _batch()
    params = transform.sample_params(len(x), torch.Generator().manual_seed(0))
    assert torch.equal(transform.apply(x.clone(), params), x)


def test_parameters_differ_across_the_batch():
    policy = build_policy("all_tf", SHAPE, seed=3)
    policy(_batch(16))
    params = policy.last_params
    assert len(torch.unique(params["blur"]["sigma"])) == 16
    assert len(torch.unique(params["noise"]["std"])) == 16
    assert 0 < int(params["flip"]["keep"].sum()) < 16  # p = 0.5 per scan, not per batch
    assert len({tuple(c) for c in params["cutout"]["corner"].tolist()}) > 1


def test_blur_matches_scipy_per_scan():
    x = _batch(4)
    blur = GaussianBlur(p=1.0)
    params = blur.sample_params(4, torch.Generator().manual_seed(1))
    out = blur.apply(x.clone(), params)
    for b in range(4):
        sigma = float(params["sigma"][b])
        expected = ndi.gaussian_filter(x[b, 0].numpy().astype(np.float64), sigma, mode="nearest")
        np.testing.assert_allclose(out[b, 0].numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("shape", [(20, 24, 20), (2, 3, 9)])
def test_blur_by_matrix_products_matches_scipy(shape):
    """The blur as one matrix product per axis, each scan its own sigma (the form the GPU
    benchmark times against GaussianBlur.apply), checked on the CPU; axes shorter than
    the kernel fold every tap onto the edges."""
    x = torch.rand(3, 1, *shape, generator=torch.Generator().manual_seed(0)) * 10
    sigmas = [0.3, 1.0, 2.7]
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as where fine-tuning augments
        out = blur_by_matmul(x, sigmas)
    assert out.dtype == torch.float32
    for b, sigma in enumerate(sigmas):
        expected = ndi.gaussian_filter(x[b, 0].double().numpy(), sigma, mode="nearest")
        np.testing.assert_allclose(out[b, 0].numpy(), expected, atol=1e-5, rtol=1e-6)


def test_flip_mirrors_the_sampled_axis():
    x = _batch()
    flip = Flip(p=1.0)
    params = flip.sample_params(len(x), torch.Generator().manual_seed(2))
    out = flip.apply(x.clone(), params)
    for b in range(len(x)):
        assert torch.equal(out[b], x[b].flip(int(params["axis"][b]) + 1))


def test_noise_has_the_sampled_std():
    x = torch.zeros(3, 1, 40, 40, 40)
    noise = GaussianNoise(std=(0.1, 1.0), p=1.0)
    params = noise.sample_params(3, torch.Generator().manual_seed(3))
    out = noise.apply(x.clone(), params)
    for b in range(3):
        assert float(out[b].std()) == pytest.approx(float(params["std"][b]), rel=0.02)


def test_cutout_zeroes_one_box_of_a_quarter_per_axis():
    x = torch.ones(4, 1, *SHAPE)
    policy = build_policy("cutout", SHAPE, seed=0)
    policy.transforms = policy.transforms[1:]  # drop z-scoring: a constant scan has std 0
    out = policy(x)
    patch = [math.ceil(s / 4) for s in SHAPE]
    for b in range(4):
        zeros = (out[b, 0] == 0).nonzero()
        assert len(zeros) == math.prod(patch)
        assert (zeros.max(0).values - zeros.min(0).values + 1).tolist() == patch


def test_crop_resizes_a_box_back_to_full_size():
    # A ramp along x stays a ramp: the crop's values, stretched by 1 / 0.75.
    ramp = torch.arange(SHAPE[0], dtype=torch.float32).view(1, 1, -1, 1, 1).expand(2, 1, *SHAPE)
    crop = CropResize(SHAPE, (9, 11, 8), p=1.0)
    params = crop.sample_params(2, torch.Generator().manual_seed(4))
    out = crop.apply(ramp.clone(), params)
    for b in range(2):
        start = int(params["corner"][b, 0])
        src = (torch.arange(SHAPE[0]) + 0.5) * 9 / SHAPE[0] - 0.5
        expected = start + src.clamp(0, 8)
        assert torch.allclose(out[b, 0, :, 5, 5], expected, atol=1e-5)


def test_generator_state_resumes_the_stream():
    x = _batch()
    policy = build_policy("all_tf", SHAPE, seed=11)
    policy(x)
    state = policy.state_dict()
    expected = policy(x)
    resumed = build_policy("all_tf", SHAPE, seed=0)
    resumed.load_state_dict(state)
    assert torch.equal(resumed(x), expected)


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="unknown policy 'cutot'"):
        build_policy("cutot", SHAPE)
    with pytest.raises(ValueError, match=r"probability p must lie in \[0, 1\], got 1.5"):
        Flip(p=1.5)
    with pytest.raises(ValueError, match=r"\(B, C, X, Y, Z\)"):
        build_policy("none", SHAPE)(torch.zeros(*SHAPE))


@pytest.mark.parametrize(
    ("shape", "size"), [((2, 1, 9, 11, 7), (12, 14, 10)), ((1, 2, 20, 5, 8), (7, 9, 30))]
)
def test_two_pass_resize_equals_torch_trilinear(shape, size):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(3))
    reference = F.interpolate(x, size=size, mode="trilinear", align_corners=False)
    torch.testing.assert_close(resize_trilinear(x, size), reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_z_scoring_keeps_dtype_and_leaves_the_input_alone(dtype):
    x = (torch.rand(3, 1, 6, 7, 5) * 5 + 2).to(dtype)
    before = x.clone()
    out = build_policy("none", (6, 7, 5), seed=0)(x)
    assert out.dtype == dtype and torch.equal(x, before)
    means = out.float().mean(dim=(1, 2, 3, 4))
    assert torch.allclose(means, torch.zeros(3), atol=2e-2)
