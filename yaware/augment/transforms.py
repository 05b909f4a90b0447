"""Batched 3D transforms, each scan of the batch with its own random parameters.

Every transform splits sampling from applying, as TorchIO and MONAI do:
``sample_params(batch_size, generator)`` draws one value per scan from a CPU
``torch.Generator`` (so the same seed gives the same views on CPU and GPU, and reading the
parameters never waits for the device) and returns tensors of leading size B, with a
per-scan ``keep`` mask for the probability; ``apply(x, params)`` is deterministic and runs
on the batch's device. Batches have shape (B, C, X, Y, Z).
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

Params = dict[str, torch.Tensor]
Shape3 = tuple[int, int, int]


_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.float16: np.float16}


def new_like(x: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor like ``x``; on the CPU from numpy's allocator.

    torch's CPU allocator hands each large tensor fresh pages, paid in page faults on first
    write (about 1.2 ms for a 121x145x121 float32 scan, more than z-scoring it); numpy's
    allocator reuses freed memory (about 0.1 ms).
    """
    if x.device.type != "cpu" or x.dtype not in _NUMPY_DTYPES:
        return torch.empty_like(x)
    return torch.from_numpy(np.empty(tuple(x.shape), _NUMPY_DTYPES[x.dtype]))


def _check_probability(p: float, name: str) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name}: probability p must lie in [0, 1], got {p}")
    return float(p)


def _check_range(bounds: tuple[float, float], name: str) -> tuple[float, float]:
    low, high = map(float, bounds)
    if not 0 <= low <= high:
        raise ValueError(f"{name}: range must satisfy 0 <= low <= high, got {bounds}")
    return low, high


def _uniform(n: int, bounds: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * torch.rand(n, generator=generator)


def _keep(n: int, p: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) < p


def _corners(n: int, volume: Shape3, box: Shape3, generator: torch.Generator) -> torch.Tensor:
    """Random corners (n, 3) so that a box of size ``box`` lies inside ``volume``."""
    columns = [
        torch.randint(0, v - b + 1, (n,), generator=generator)
        for v, b in zip(volume, box, strict=True)
    ]
    return torch.stack(columns, dim=1)


class ZScore:
    """Standardise each scan to zero mean and unit variance over all its voxels."""

    name = "zscore"

    def sample_params(self, batch_size: int, generator: torch.Generator) -> Params:
        return {}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        dims = tuple(range(1, x.ndim))
        n = x[0].numel()
        # Mean and sum of squares: on CPU about 20x faster than torch.std_mean, and exact
        # enough for image intensities (|mean| / std far below 1e3).
        mean = x.mean(dim=dims, keepdim=True)
        sum_sq = torch.linalg.vector_norm(x, dim=dims, keepdim=True).square()
        var = ((sum_sq - n * mean.square()) / max(n - 1, 1)).clamp_min(0)
        scale = 1.0 / var.sqrt().clamp_min(1e-6)
        return torch.sub(x, mean, out=new_like(x)).mul_(scale)


@dataclass
class Flip:
    """Mirror each selected scan along one random spatial axis."""

    p: float = 0.5
    name: str = "flip"

    def __post_init__(self) -> None:
        self.p = _check_probability(self.p, self.name)

    def sample_params(self, batch_size: int, generator: torch.Generator) -> Params:
        keep = _keep(batch_size, self.p, generator)
        return {"keep": keep, "axis": torch.randint(0, 3, (batch_size,), generator=generator)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        for b in params["keep"].nonzero().flatten().tolist():
            x[b] = x[b].flip(int(params["axis"][b]) + 1)
        return x


@dataclass
class GaussianBlur:
    """Gaussian smoothing with a per-scan width sigma ~ U(low, high) voxels, all axes alike.

    Separable convolution truncated at 4 sigma, edges replicated: the numbers of
    ``scipy.ndimage.gaussian_filter(x, sigma, mode="nearest")``.
    """

    sigma: tuple[float, float] = (0.1, 1.0)
    p: float = 0.5
    name: str = "blur"

    def __post_init__(self) -> None:
        self.p = _check_probability(self.p, self.name)
        self.sigma = _check_range(self.sigma, self.name)

    def sample_params(self, batch_size: int, generator: torch.Generator) -> Params:
        keep = _keep(batch_size, self.p, generator)
        return {"keep": keep, "sigma": _uniform(batch_size, self.sigma, generator)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        """Scan by scan, in place, as sums of shifted views (see :func:`_gaussian_blur_`).

        On the CPU the faster form. On a GPU batched matrix products are faster alone but
        made pretraining slower, sharing the GPU with the step (``python -m
        benchmarks.gpu_pretrain --sections blur_forms``).
        """
        for b in params["keep"].nonzero().flatten().tolist():
            _gaussian_blur_(x[b : b + 1], float(params["sigma"][b]), Workspace.of(self))
        return x


class Workspace:
    """Scratch tensors kept between calls, by name.

    A fresh tensor of a whole scan costs page faults on the CPU (about 1.2 ms for 8.5 MB,
    see :func:`new_like`), often more than the arithmetic done in it; reusing scratch space
    removes that cost. Not shared between threads: one policy per thread.
    """

    def __init__(self) -> None:
        self._tensors: dict[str, torch.Tensor] = {}

    @staticmethod
    def of(owner: object) -> "Workspace":
        """The workspace kept on ``owner`` (a transform), made on first use."""
        if not hasattr(owner, "_workspace"):
            owner._workspace = Workspace()  # type: ignore[attr-defined]
        return owner._workspace  # type: ignore[attr-defined]

    def get(self, name: str, like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        held = self._tensors.get(name)
        if (
            held is None
            or held.numel() < math.prod(shape)
            or held.dtype != like.dtype
            or held.device != like.device
        ):
            held = torch.empty(math.prod(shape), dtype=like.dtype, device=like.device)
            self._tensors[name] = held
        return held[: math.prod(shape)].view(shape)


def gaussian_taps(sigma: float) -> torch.Tensor:
    """Normalised Gaussian weights (float64) at offsets -r..r, r = 4 sigma rounded as scipy."""
    sigma = max(sigma, 1e-3)
    radius = max(1, int(4.0 * sigma + 0.5))  # scipy's truncation at 4 sigma
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return taps / taps.sum()


def _gaussian_blur_(x: torch.Tensor, sigma: float, work: Workspace) -> None:
    """Separable Gaussian blur of one scan (1, C, X, Y, Z), in place, as sums of shifted views.

    One scan at a time with scalar tap weights: on CPU about twice as fast as the batched
    form (the working set stays in cache) and far faster than a grouped conv3d. Edges are
    replicated into a padded scratch copy along each axis in turn.
    """
    taps = gaussian_taps(sigma).tolist()
    radius = len(taps) // 2
    out = x
    for axis in range(2, 5):
        size = out.shape[axis]
        shape = list(out.shape)
        shape[axis] = size + 2 * radius
        padded = work.get(f"padded{axis}", out, tuple(shape))
        padded.narrow(axis, radius, size).copy_(out)
        padded.narrow(axis, 0, radius).copy_(
            out.narrow(axis, 0, 1).expand_as(padded.narrow(axis, 0, radius))
        )
        padded.narrow(axis, radius + size, radius).copy_(
            out.narrow(axis, size - 1, 1).expand_as(padded.narrow(axis, 0, radius))
        )
        # The last axis writes straight into the scan: its values are in `padded` by now.
        acc = x if axis == 4 else work.get(f"acc{axis}", out, tuple(out.shape))
        torch.mul(padded.narrow(axis, radius, size), taps[radius], out=acc)
        for t, weight in enumerate(taps):
            if t != radius:
                acc.add_(padded.narrow(axis, t, size), alpha=weight)
        out = acc


@dataclass
class GaussianNoise:
    """Additive Gaussian noise with a per-scan standard deviation ~ U(low, high)."""

    std: tuple[float, float] = (0.1, 1.0)
    p: float = 0.5
    name: str = "noise"

    def __post_init__(self) -> None:
        self.p = _check_probability(self.p, self.name)
        self.std = _check_range(self.std, self.name)

    def sample_params(self, batch_size: int, generator: torch.Generator) -> Params:
        keep = _keep(batch_size, self.p, generator)
        std = _uniform(batch_size, self.std, generator)
        seed = torch.randint(0, 2**62, (1,), generator=generator)
        return {"keep": keep, "std": std, "seed": seed}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        selected = params["keep"].nonzero().flatten()
        if len(selected) == 0:
            return x
        noise_gen = torch.Generator(device=x.device).manual_seed(int(params["seed"]))
        noise = Workspace.of(self).get("noise", x, tuple(x.shape[1:]))
        for b in selected.tolist():
            x[b].add_(noise.normal_(generator=noise_gen), alpha=float(params["std"][b]))
        return x


@dataclass
class Cutout:
    """Set one box of ``patch`` voxels per scan to zero, at a random position inside."""

    volume: Shape3
    patch: Shape3
    p: float = 1.0
    name: str = "cutout"

    def __post_init__(self) -> None:
        self.p = _check_probability(self.p, self.name)

    def sample_params(self, batch_size: int, generator: torch.Generator) -> Params:
        keep = _keep(batch_size, self.p, generator)
        return {"keep": keep, "corner": _corners(batch_size, self.volume, self.patch, generator)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        px, py, pz = self.patch
        for b in params["keep"].nonzero().flatten().tolist():
            i, j, k = params["corner"][b].tolist()
            x[b, :, i : i + px, j : j + py, k : k + pz] = 0
        return x


@dataclass
class CropResize:
    """Crop a random box of ``crop`` voxels and resize it back to the full grid (trilinear)."""

    volume: Shape3
    crop: Shape3
    p: float = 1.0
    name: str = "crop"

    def __post_init__(self) -> None:
        self.p = _check_probability(self.p, self.name)

    def sample_params(self, batch_size: int, generator: torch.Generator) -> Params:
        keep = _keep(batch_size, self.p, generator)
        return {"keep": keep, "corner": _corners(batch_size, self.volume, self.crop, generator)}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        selected = params["keep"].nonzero().flatten().tolist()
        if not selected:
            return x
        cx, cy, cz = self.crop
        if x.device.type == "cpu":  # one scan at a time: the working set stays in cache
            for b in selected:
                i, j, k = params["corner"][b].tolist()
                box = x[b : b + 1, :, i : i + cx, j : j + cy, k : k + cz]
                x[b] = resize_trilinear(box, tuple(x.shape[2:]))[0]
            return x
        boxes = []
        for b in selected:
            i, j, k = params["corner"][b].tolist()
            boxes.append(x[b, :, i : i + cx, j : j + cy, k : k + cz])
        resized = resize_trilinear(torch.stack(boxes), tuple(x.shape[2:]))
        # Scan by scan: indexing with a tensor built from the host list would copy it to the
        # device and make the host wait for every queued kernel, each step.
        for i, b in enumerate(selected):
            x[b] = resized[i]
        return x


def resize_trilinear(x: torch.Tensor, size: Shape3) -> torch.Tensor:
    """``F.interpolate(x, size, mode="trilinear", align_corners=False)``, as two bilinear
    passes: (Y, Z) of every X slice, then X against the flattened (Y, Z) plane.

    Trilinear interpolation is separable, so the numbers are the same; on one CPU core it
    runs about 1.8x faster than the trilinear kernel at 121x145x121.
    """
    n, c, a, b, d = x.shape
    planes = F.interpolate(
        x.reshape(n * c, a, b, d), size=size[1:], mode="bilinear", align_corners=False
    )
    columns = planes.reshape(n * c, 1, a, size[1] * size[2])
    out = F.interpolate(
        columns, size=(size[0], size[1] * size[2]), mode="bilinear", align_corners=False
    )
    return out.reshape(n, c, *size)
