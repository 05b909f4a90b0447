"""Reading grey-matter maps: a NIfTI file or a row of an array cohort, checked against
the grid it must be on. QC (:mod:`yaware.data.qc_metrics`) and the conversion
(:mod:`yaware.data.convert`) both read maps through this module.
"""

import os

import nibabel as nib
import numpy as np

from yaware.data.grid import Grid, box_text, cat12_grid
from yaware.errors import DataError


def _in_grid_orientation(image: nib.spatialimages.SpatialImage, grid: Grid):
    """``image`` with its voxel axes flipped and permuted to the grid's, when that makes it
    the grid (a map saved in another orientation, e.g. RAS+ by ``nib.as_closest_canonical``
    or FSL); otherwise ``image`` unchanged, for the checks to report."""
    if grid.matches(image.shape, image.affine, atol=1e-2):
        return image
    transform = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(image.affine), nib.orientations.io_orientation(grid.affine)
    )
    reoriented = image.as_reoriented(transform)
    return reoriented if grid.matches(reoriented.shape, reoriented.affine, atol=1e-2) else image


def load_map(path: str | os.PathLike, grid: Grid) -> np.ndarray:
    """A grey-matter map as float32 (X, Y, Z), checked against ``grid``.

    Raises:
        DataError: unreadable file, not 3-D, wrong shape/voxel size/affine, NaN/inf or
            all zeros; the message says which and what the grid should be.
    """
    if str(path).endswith(".npy"):
        return load_npy_map(path, grid)
    try:
        # Trailing axes of length 1 (X, Y, Z, 1[, 1]), as some tools save a 3-D map.
        image = nib.funcs.squeeze_image(nib.load(path))
        if len(image.shape) == 3:
            image = _in_grid_orientation(image, grid)
        data = np.asanyarray(image.dataobj, dtype=np.float32)
    except Exception as err:  # nibabel raises many types for broken files
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"unreadable NIfTI ({detail})") from err
    if data.ndim != 3:
        raise DataError(f"image is {data.ndim}-D with shape {data.shape}; expected one 3-D map")
    zooms = image.header.get_zooms()[:3]
    if data.shape != grid.shape:
        hint = ""
        if np.ptp(zooms) < 1e-3 and cat12_grid(float(zooms[0])).shape == data.shape:
            hint = (
                f": the map is on CAT12's {float(zooms[0]):g} mm grid; set the cohort's "
                f"voxel_mm: {float(zooms[0]):g}"
            )
        elif np.allclose(zooms, grid.voxel_mm, atol=1e-3):
            hint = (
                f": its {grid.voxel_mm:g} mm voxels cover {box_text(data.shape, image.affine)} "
                f"mm, CAT12's box {grid.box_mm()} mm; the map was written with another "
                "bounding box: write it with CAT12's default one"
            )
        raise DataError(f"shape {data.shape} differs from the grid's {grid.shape}{hint}")
    if not np.allclose(zooms, grid.voxel_mm, atol=1e-3):
        raise DataError(f"voxel size {tuple(map(float, zooms))} mm, expected {grid.voxel_mm} mm")
    if not np.allclose(image.affine, grid.affine, atol=1e-2):
        raise DataError("affine is not the template space's (not normalised to MNI by CAT12?)")
    check_values(data)
    return data


def load_npy_map(path: str | os.PathLike, grid: Grid) -> np.ndarray:
    """A map stored as a ``.npy`` of shape (1, X, Y, Z) or (X, Y, Z) on ``grid`` (as
    OpenBHB's), which holds no affine: its shape and values are checked."""
    if not os.path.isfile(path):
        raise DataError(f"missing file {path}")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as err:  # numpy raises several types for a broken or foreign file
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{path}: not a readable .npy array ({detail})") from err
    shape = array.shape[1:] if array.ndim == 4 and array.shape[0] == 1 else array.shape
    if shape != grid.shape:
        raise DataError(
            f"{path}: shape {array.shape}; a map on CAT12's {grid.voxel_mm:g} mm grid is "
            f"(1, {', '.join(map(str, grid.shape))}); fetch the file again, or set the "
            "cohort's voxel_mm to the grid it is on"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path}: dtype {array.dtype}; expected grey-matter densities as floats")
    data = np.asarray(array, dtype=np.float32).reshape(shape)
    check_values(data)
    return data


# A modulated grey-matter map holds densities from 0 to about 1.5; far above that, the map
# was stored scaled (by 100 or 1000, as integers often are) or is another kind of image.
MAX_DENSITY = 5.0


def check_values(data: np.ndarray) -> None:
    """Raises DataError for NaN or infinite voxels, a map of zeros only, or values no
    grey-matter density takes."""
    finite = np.isfinite(data)
    if not finite.all():
        raise DataError(f"{int((~finite).sum())} voxels are NaN or infinite")
    if not data.any():
        raise DataError("all voxels are zero")
    if (top := float(data.max())) > MAX_DENSITY:
        raise DataError(
            f"voxels up to {top:g}: not a grey-matter density map (0 to about 1.5). A map "
            "stored scaled (e.g. by 1000) must be divided back; a T1 image is no GM map"
        )


# CAT12's usual output grids, to name the one an array's maps are on.
CAT12_VOXEL_MM = (1.0, 1.5, 2.0, 3.0, 4.5, 6.0, 9.0)


def open_map_array(path: str | os.PathLike, grid: Grid, n_rows: int | None = None) -> np.ndarray:
    """The maps of an array cohort, memory-mapped as (N, X, Y, Z): a (N, 1, X, Y, Z) or
    (N, X, Y, Z) .npy on ``grid``, with ``n_rows`` maps (one per row of its table)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as err:  # numpy raises several types for a broken or foreign file
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{path}: not a readable .npy array ({detail})") from err
    if array.ndim == 5 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 4:
        raise DataError(
            f"{path}: shape {array.shape}; expected maps as (N, 1, X, Y, Z) or (N, X, Y, Z)"
        )
    if array.shape[1:] != grid.shape:
        on = [v for v in CAT12_VOXEL_MM if cat12_grid(v).shape == array.shape[1:]]
        hint = f"; they are on CAT12's {on[0]:g} mm grid: set the cohort's voxel_mm: {on[0]:g}"
        raise DataError(
            f"{path}: maps of shape {array.shape[1:]}, not the shape of CAT12's "
            f"{grid.voxel_mm:g} mm grid {grid.shape}" + (hint if on else "")
        )
    if np.issubdtype(array.dtype, np.integer):
        raise DataError(
            f"{path}: maps stored as {array.dtype}; grey-matter densities are fractions (0 to "
            "about 1.5), so integer maps were scaled (often by 1000). Save them as floats in "
            "their unit, e.g. np.save(out, np.load(path).astype(np.float32) / 1000)"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path}: dtype {array.dtype}; the maps must be real numbers")
    if n_rows is not None and len(array) != n_rows:
        raise DataError(
            f"{path} holds {len(array)} maps but its participants table has {n_rows} rows; "
            "row i of the table must describe map i"
        )
    return array
