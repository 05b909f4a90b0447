"""The Gaussian blur of all_tf as batched matrix products: the alternative form that
``python -m benchmarks.gpu_pretrain --sections blur_forms`` times against
``GaussianBlur.apply`` (sums of shifted views, scan by scan).

The same numbers as ``GaussianBlur.apply``. On a GPU three matrix products replace some 50
launches per scan, each a full pass over the scan: 1.2-1.8x faster alone, yet pretraining
ran 3.5-6.5 % slower with it (run k in RESULTS.md: its large kernels hold the GPU the step
needs), so yaware does not use it. On the CPU the shifted views are faster too.
"""

import torch

from yaware.augment import GaussianBlur
from yaware.augment.transforms import Params, gaussian_taps


def blur_matrices(sigmas: list[float], length: int) -> torch.Tensor:
    """(n, L, L) float64: entry [s, i] is the weight of position s in blurred position i
    along an axis of ``length``, taps past the edges folded onto the edge (scipy "nearest")."""
    taps = [gaussian_taps(sigma) for sigma in sigmas]
    radius = max(len(t) for t in taps) // 2
    weights = torch.zeros(len(sigmas), 2 * radius + 1, dtype=torch.float64)
    for b, t in enumerate(taps):  # centred, zero beyond each scan's own radius
        weights[b, radius - len(t) // 2 : radius + len(t) // 2 + 1] = t
    positions = torch.arange(length)
    offsets = torch.arange(-radius, radius + 1)
    sources = (positions[None, :] + offsets[:, None]).clamp(0, length - 1)  # (taps, L)
    flat = (sources * length + positions[None, :]).reshape(1, -1).expand(len(sigmas), -1)
    matrices = torch.zeros(len(sigmas), length * length, dtype=torch.float64)
    matrices.scatter_add_(
        1, flat, weights[:, :, None].expand(-1, -1, length).reshape(len(sigmas), -1)
    )
    return matrices.view(len(sigmas), length, length)


def blur_by_matmul(x: torch.Tensor, sigmas: list[float]) -> torch.Tensor:
    """Separable Gaussian blur of each scan of (n, C, X, Y, Z) with its own sigma, as three
    batched matrix products, one per axis."""
    out = x
    # Under autocast a matrix product would run in bf16: the views would lose all but three
    # digits, and differ from the CPU's.
    with torch.autocast(x.device.type, enabled=False):
        for axis, pattern in enumerate(
            ("bcxyz,bxi->bciyz", "bcxyz,byi->bcxiz", "bcxyz,bzi->bcxyi")
        ):
            matrices = blur_matrices(sigmas, x.shape[2 + axis]).to(x.dtype)
            if x.device.type == "cuda":  # from pinned memory: the copy does not wait for the GPU
                matrices = matrices.pin_memory()
            out = torch.einsum(pattern, out, matrices.to(x.device, non_blocking=True))
    return out


def by_matrix_products(blur: GaussianBlur, x: torch.Tensor, params: Params) -> torch.Tensor:
    """A stand-in for ``GaussianBlur.apply``: the selected scans blurred at once."""
    selected = params["keep"].nonzero().flatten().tolist()
    if not selected:
        return x
    sigmas = [float(params["sigma"][b]) for b in selected]
    blurred = blur_by_matmul(torch.stack([x[b] for b in selected]), sigmas)
    for i, b in enumerate(selected):  # scan by scan: no index tensor sent to the device
        x[b] = blurred[i]
    return x
