"""Batched, seedable 3D augmentations; entry point :func:`build_policy`."""

from yaware.augment.policy import POLICIES, AugmentationPolicy, build_policy
from yaware.augment.transforms import (
    CropResize,
    Cutout,
    Flip,
    GaussianBlur,
    GaussianNoise,
    ZScore,
)

__all__ = [
    "POLICIES",
    "AugmentationPolicy",
    "CropResize",
    "Cutout",
    "Flip",
    "GaussianBlur",
    "GaussianNoise",
    "ZScore",
    "build_policy",
]
