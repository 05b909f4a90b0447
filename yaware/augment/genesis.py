"""Model Genesis corruptions (Zhou et al., MICCAI 2019 / MedIA 2021), batched and seedable.

A network learns to restore a scan, min-max scaled to [0, 1], from a corrupted copy. Each
corruption is applied per scan with its own probability, in this order:

- non-linear intensity transformation: a random monotone cubic Bezier curve maps [0, 1]
  to [0, 1] (increasing or, half of the time, decreasing);
- local voxel shuffling: the voxels inside small random sub-cubes are permuted;
- painting: either in-painting (a few random boxes replaced by uniform noise) or
  out-painting (everything outside a few random boxes replaced by noise).

Same split as the other transforms: ``sample_params`` draws on a CPU generator,
``apply`` is deterministic given the parameters (noise is drawn from a device generator
seeded by a sampled integer).
"""

import math
from dataclasses import dataclass

import numpy as np
import torch

from yaware.augment.transforms import Params, Shape3, _check_probability, _keep

BEZIER_POINTS = 257
TABLE_POINTS = 16385


def min_max(x: torch.Tensor) -> torch.Tensor:
    """Scale each scan of (B, C, X, Y, Z) to [0, 1]."""
    flat = x.flatten(1)
    low = flat.min(1).values.view(-1, 1, 1, 1, 1)
    high = flat.max(1).values.view(-1, 1, 1, 1, 1)
    return (x - low) / (high - low).clamp_min(1e-6)


def _boxes(
    volume: Shape3,
    shape: tuple[int, int],
    generator: torch.Generator,
    low: float,
    high: float,
    min_side: int = 1,
) -> torch.Tensor:
    """``shape`` random boxes [x0, y0, z0, sx, sy, sz] (int64) whose sides are low..high
    of the volume's, placed uniformly inside it."""
    sides = torch.tensor(volume, dtype=torch.float64)
    share = low + (high - low) * torch.rand(*shape, 3, generator=generator, dtype=torch.float64)
    sizes = (sides * share).round().clamp(min=min_side).minimum(sides)
    corners = (
        torch.rand(*shape, 3, generator=generator, dtype=torch.float64) * (sides - sizes + 1)
    ).floor()
    return torch.cat([corners, sizes], dim=-1).long()


@dataclass
class NonLinearIntensity:
    """Map intensities through a random monotone Bezier curve (inputs in [0, 1])."""

    p: float = 0.9
    name: str = "nonlinear"

    def __post_init__(self) -> None:
        self.p = _check_probability(self.p, self.name)

    def sample_params(self, batch_size: int, generator: torch.Generator) -> Params:
        keep = _keep(batch_size, self.p, generator)
        # Control points 1 and 2; points 0 and 3 are (0, 0) and (1, 1). Sorting each
        # coordinate makes x(t) and y(t) increasing, so the curve is a monotone map.
        control = torch.rand(batch_size, 2, 2, generator=generator).sort(dim=1).values
        decreasing = torch.rand(batch_size, generator=generator) < 0.5
        return {"keep": keep, "control": control, "decreasing": decreasing}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        selected = params["keep"].nonzero().flatten().tolist()
        if not selected:
            return x
        t = torch.linspace(0, 1, BEZIER_POINTS, dtype=torch.float64)[None, :, None]
        c = params["control"][selected].double()  # (n, 2 points, 2 coords)
        zero, one = torch.zeros_like(c[:, :1]), torch.ones_like(c[:, :1])
        points = torch.cat([zero, c, one], dim=1)  # (n, 4, 2)
        weights = torch.cat([(1 - t) ** 3, 3 * t * (1 - t) ** 2, 3 * t**2 * (1 - t), t**3], dim=2)
        curve = weights @ points  # (n, BEZIER_POINTS, 2)
        xs, ys = curve[..., 0], curve[..., 1]
        ys = torch.where(params["decreasing"][selected][:, None], ys.flip(1), ys)
        # The curve read at evenly spaced intensities, once per scan: a voxel then falls
        # between two known entries of this table, with no search among the curve's points.
        grid = np.linspace(0, 1, TABLE_POINTS)
        rows = [np.interp(grid, xs[k].numpy(), ys[k].numpy()) for k in range(len(selected))]
        table = torch.from_numpy(np.stack(rows)).float().to(x.device)
        for k, b in enumerate(selected):
            position = x[b].reshape(1, -1).clamp(0, 1) * (TABLE_POINTS - 1)
            left = position.long().clamp(max=TABLE_POINTS - 2)
            low, high = table[k][left], table[k][left + 1]
            x[b] = (low + (position - left) * (high - low)).reshape(x[b].shape)
        return x


@dataclass
class LocalShuffle:
    """Permute the voxels inside ``n_blocks`` random sub-cubes (sides up to 1/10 of the scan)."""

    volume: Shape3
    n_blocks: int = 50
    p: float = 0.5
    name: str = "local_shuffle"

    def __post_init__(self) -> None:
        self.p = _check_probability(self.p, self.name)

    def sample_params(self, batch_size: int, generator: torch.Generator) -> Params:
        keep = _keep(batch_size, self.p, generator)
        boxes = _boxes(self.volume, (batch_size, self.n_blocks), generator, 0.02, 0.1, 2)
        seeds = torch.randint(0, 2**62, (batch_size,), generator=generator)
        return {"keep": keep, "boxes": boxes, "seed": seeds}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        for b in params["keep"].nonzero().flatten().tolist():
            order = torch.Generator().manual_seed(int(params["seed"][b]))
            for i, j, k, sx, sy, sz in params["boxes"][b].tolist():
                block = x[b, :, i : i + sx, j : j + sy, k : k + sz]
                flat = block.reshape(block.shape[0], -1)
                permutation = torch.randperm(flat.shape[1], generator=order).to(x.device)
                x[b, :, i : i + sx, j : j + sy, k : k + sz] = flat[:, permutation].reshape(
                    block.shape
                )
        return x


@dataclass
class Painting:
    """In-painting (boxes filled with noise) or out-painting (all but boxes filled)."""

    volume: Shape3
    p: float = 0.9
    inpaint_share: float = 0.2
    max_boxes: int = 5
    name: str = "painting"

    def __post_init__(self) -> None:
        self.p = _check_probability(self.p, self.name)
        self.inpaint_share = _check_probability(self.inpaint_share, f"{self.name}.inpaint_share")

    def sample_params(self, batch_size: int, generator: torch.Generator) -> Params:
        keep = _keep(batch_size, self.p, generator)
        inpaint = torch.rand(batch_size, generator=generator) < self.inpaint_share
        counts = torch.randint(1, self.max_boxes + 1, (batch_size,), generator=generator)
        boxes = _boxes(self.volume, (batch_size, self.max_boxes), generator, 0.15, 0.4)
        seed = torch.randint(0, 2**62, (1,), generator=generator)
        return {"keep": keep, "inpaint": inpaint, "counts": counts, "boxes": boxes, "seed": seed}

    def apply(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        selected = params["keep"].nonzero().flatten().tolist()
        if not selected:
            return x
        noise_gen = torch.Generator(device=x.device).manual_seed(int(params["seed"]))
        for b in selected:
            inside = torch.zeros(x.shape[1:], dtype=torch.bool, device=x.device)
            for i, j, k, sx, sy, sz in params["boxes"][b][: int(params["counts"][b])].tolist():
                inside[:, i : i + sx, j : j + sy, k : k + sz] = True
            replace = inside if bool(params["inpaint"][b]) else ~inside
            noise = torch.rand(x.shape[1:], generator=noise_gen, device=x.device, dtype=x.dtype)
            x[b] = torch.where(replace, noise, x[b])
        return x


class GenesisCorruption:
    """The three corruptions in order on a min-max scaled batch; seedable like a policy."""

    def __init__(self, volume: Shape3, seed: int | None = None) -> None:
        volume = tuple(int(s) for s in volume)[-3:]
        n_blocks = max(10, math.prod(volume) // 2000)
        self.transforms = [
            NonLinearIntensity(),
            LocalShuffle(volume, n_blocks=min(n_blocks, 200)),
            Painting(volume),
        ]
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        for transform in self.transforms:
            x = transform.apply(x, transform.sample_params(len(x), self.generator))
        return x

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
