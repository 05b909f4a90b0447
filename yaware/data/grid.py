"""The CAT12 template grid (MNI, 1.5 mm: 121 x 145 x 121) and coarser grids over its box."""

from dataclasses import dataclass

import numpy as np

from yaware.errors import DataError

# Corner (first voxel centre) and extent of CAT12's 1.5 mm grid, in MNI millimetres.
CAT12_ORIGIN = np.array([90.0, -126.0, -72.0])
CAT12_EXTENT_MM = np.array([180.0, 216.0, 180.0])
CAT12_DIRECTIONS = np.array([-1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Grid:
    """A voxel grid: shape and voxel-to-MNI affine."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def voxel_mm(self) -> float:
        return float(abs(self.affine[0, 0]))

    def matches(self, shape: tuple[int, ...], affine: np.ndarray, atol: float = 1e-3) -> bool:
        return tuple(shape) == self.shape and np.allclose(affine, self.affine, atol=atol)

    def box_mm(self) -> str:
        """The MNI extent of the voxel centres, ``x -90 to 90, y -126 to 90, z -72 to 108``."""
        return box_text(self.shape, self.affine)

    def world_coordinates(self) -> np.ndarray:
        """MNI coordinates of every voxel centre, shape (3, X, Y, Z)."""
        index = np.indices(self.shape).reshape(3, -1)
        world = self.affine[:3, :3] @ index + self.affine[:3, 3:]
        return world.reshape(3, *self.shape)


def box_text(shape: tuple[int, ...], affine: np.ndarray) -> str:
    """The MNI extent of the centres of a (X, Y, Z) grid of voxels under ``affine``."""
    corners = np.array([[0, 0, 0], [s - 1 for s in shape[:3]]], dtype=float)
    world = corners @ affine[:3, :3].T + affine[:3, 3]
    low, high = world.min(axis=0), world.max(axis=0)
    return ", ".join(
        f"{axis} {lo:g} to {hi:g}" for axis, lo, hi in zip("xyz", low, high, strict=True)
    )


def cat12_grid(voxel_mm: float = 1.5) -> Grid:
    """CAT12's box at ``voxel_mm``: 1.5 -> 121x145x121, 3 -> 61x73x61, 6 -> 31x37x31."""
    if voxel_mm <= 0:
        raise ValueError(f"voxel size must be > 0 mm, got {voxel_mm}")
    shape = tuple(round(e / voxel_mm) + 1 for e in CAT12_EXTENT_MM)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(CAT12_DIRECTIONS * voxel_mm)
    affine[:3, 3] = CAT12_ORIGIN
    return Grid(shape, affine)  # type: ignore[arg-type]


# The smallest grid side each encoder takes. A DenseNet halves the grid five times (stem,
# max-pool, three transitions) and its last transition's 2x2x2 average pool needs two
# voxels: 29 -> 15 -> 8 -> 4 -> 2 -> 1. The ResNets and TinyCNN pad or round up, so any
# side works. tests/test_models.py checks this table against shape-only passes of the models.
SMALLEST_SIDE = {
    **dict.fromkeys(("densenet121", "densenet169", "densenet201"), 29),
    "resnet18": 1,
    "tinycnn": 1,
    **{f"medicalnet_resnet{depth}": 1 for depth in (10, 18, 34, 50, 101, 152, 200)},
}


def check_fits_encoder(encoder: str, row_shape: tuple[int, ...], source: str) -> None:
    """Raise DataError naming ``source`` when scans of ``row_shape`` (C, X, Y, Z) are not
    what ``encoder`` takes: one channel (a grey-matter map), and no side smaller than its
    pooling needs. Either would end in a traceback deep inside torch."""
    channels, shape = row_shape[0], tuple(row_shape[1:])
    if channels != 1 and len(row_shape) == 4 and row_shape[-1] == 1:
        raise DataError(
            f"{source}: scans of shape {tuple(row_shape)}, the channel last (N, X, Y, Z, 1); "
            "the encoders take it first (N, 1, X, Y, Z): move it, e.g. "
            "np.save(path, np.moveaxis(np.load(path), -1, 1))"
        )
    if channels != 1:
        raise DataError(
            f"{source}: scans of {channels} channels; the encoders take one (the grey-matter "
            "map): keep that channel, e.g. np.save(path, np.load(path)[:, :1])"
        )
    smallest = SMALLEST_SIDE.get(encoder, 1)
    if min(shape) >= smallest:
        return
    others = [name for name, side in SMALLEST_SIDE.items() if side <= min(shape)]
    raise DataError(
        f"{source}: scans of {'x'.join(map(str, shape))} voxels are too small for encoder "
        f"{encoder}, which needs at least {smallest} voxels along each axis; use a finer "
        f"grid (a smaller conversion.voxel_mm) or the encoder {' or '.join(others)}"
    )
