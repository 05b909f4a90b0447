"""Augmentation policies of the original y-Aware code, as seedable batched callables."""

import math
from collections.abc import Sequence
from typing import Any, Protocol

import torch

from yaware.augment.transforms import (
    CropResize,
    Cutout,
    Flip,
    GaussianBlur,
    GaussianNoise,
    Params,
    ZScore,
)
from yaware.errors import ConfigError

POLICIES = ("all_tf", "cutout", "crop", "none")


class Transform(Protocol):
    name: str

    def sample_params(self, batch_size: int, generator: torch.Generator) -> Params: ...

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor: ...


class AugmentationPolicy:
    """A sequence of transforms applied to a batch (B, C, X, Y, Z), z-scoring first.

    The policy owns a CPU generator: ``AugmentationPolicy(ts, seed=0)`` gives the same views
    for the same batches in the same order, on any device. ``state_dict`` /
    ``load_state_dict`` save and restore the generator for exact resumption;
    ``last_params`` holds what the last call drew.
    """

    def __init__(self, transforms: Sequence[Transform], seed: int | None = None) -> None:
        self.transforms = [ZScore(), *transforms]
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))
        self.last_params: dict[str, Params] = {}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"expected a batch of shape (B, C, X, Y, Z), got {tuple(x.shape)}")
        if not x.is_floating_point():
            x = x.float()
        self.last_params = {}
        for transform in self.transforms:
            params = transform.sample_params(len(x), self.generator)
            self.last_params[transform.name] = params
            x = transform.apply(x, params)
        return x

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])

    def __repr__(self) -> str:
        return f"AugmentationPolicy({[t.name for t in self.transforms]})"


def build_policy(
    name: str, input_shape: Sequence[int], seed: int | None = None
) -> AugmentationPolicy:
    """The original's policies for volumes of ``input_shape`` ((X, Y, Z) or (C, X, Y, Z)).

    - ``"all_tf"``: each with p = 0.5, in order: flip, blur sigma ~ U(0.1, 1), noise std
      ~ U(0.1, 1), cutout of ceil(size / 4), crop of ceil(0.75 * size) resized back.
    - ``"cutout"`` / ``"crop"``: that one transform with p = 1 (the released model: cutout).
    - ``"none"``: z-scoring only.
    """
    volume = tuple(int(s) for s in input_shape)[-3:]
    if len(volume) != 3 or min(volume) < 2:
        raise ConfigError(f"input_shape must end with three spatial sizes, got {input_shape!r}")
    patch = tuple(math.ceil(s / 4) for s in volume)
    crop = tuple(math.ceil(0.75 * s) for s in volume)
    policies: dict[str, list[Transform]] = {
        "all_tf": [
            Flip(p=0.5),
            GaussianBlur(sigma=(0.1, 1.0), p=0.5),
            GaussianNoise(std=(0.1, 1.0), p=0.5),
            Cutout(volume, patch, p=0.5),
            CropResize(volume, crop, p=0.5),
        ],
        "cutout": [Cutout(volume, patch, p=1.0)],
        "crop": [CropResize(volume, crop, p=1.0)],
        "none": [],
    }
    if name not in policies:
        raise ConfigError(f"augmentation: unknown policy {name!r}; choose one of {POLICIES}")
    return AugmentationPolicy(policies[name], seed=seed)
