"""The strided stem convolution, computed as a space-to-depth convolution.

DenseNet's and ResNet's stem is a 7x7x7 convolution with stride 2 over one input channel.
cuDNN has no tensor-core kernel for a single input channel: on an H200 this one layer took
29 % of a DenseNet121 step at 1.8 % of the bf16 matmul rate (``benchmarks.gpu_pretrain
--sections convolutions``). Folding each 2x2x2 block of voxels into 8 channels turns it
into a stride-1 convolution with 8 input channels and a 4x4x4 kernel whose weights are the
7x7x7 kernel's, zero-padded to 8 taps and regrouped: the same sums, in a form the tensor
cores run. The module keeps the 7x7x7 weight, so state-dict keys, initialisation and
checkpoints are unchanged.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


def _taps(kernel: int, padding: int) -> tuple[int, int, int]:
    """Zero taps to add before and after a stride-2 kernel, and its first block offset.

    Tap k of the kernel reads voxel 2o + k - padding. Padding the kernel to start at an
    even offset and to an even length makes voxel 2(o + m) + r for block offsets m and
    parities r, so each output reads whole 2-voxel blocks.
    """
    start = -padding
    before = start % 2
    after = (kernel + before) % 2
    return before, after, (start - before) // 2


def space_to_depth_conv(x: torch.Tensor, weight: torch.Tensor, padding: int) -> torch.Tensor:
    """``F.conv3d(x, weight, stride=2, padding=padding)`` as a stride-1 convolution of the
    2x2x2 blocks of ``x``; the same result up to the order of floating-point sums."""
    n, channels, *size = x.shape
    kernel = weight.shape[-1]
    before, after, first_block = _taps(kernel, padding)
    blocks = (kernel + before + after) // 2
    out_size = [(s + 2 * padding - kernel) // 2 + 1 for s in size]
    x = F.pad(x, [p for s in reversed(size) for p in (0, s % 2)])  # even sizes
    half = [(s + s % 2) // 2 for s in size]
    d, h, w = half
    # (N, C, D/2, 2, H/2, 2, W/2, 2) -> channels-last (N, D/2, H/2, W/2, C*8), seen as NCDHW
    x = x.reshape(n, channels, d, 2, h, 2, w, 2).permute(0, 2, 4, 6, 1, 3, 5, 7)
    x = x.reshape(n, d, h, w, channels * 8).permute(0, 4, 1, 2, 3)
    pads: list[int] = []
    for length, out in zip(reversed(half), reversed(out_size), strict=True):
        last_block = out - 1 + first_block + blocks - 1  # the last block any output reads
        pads += [-first_block, last_block - (length - 1)]  # negative: crop unread blocks
    x = F.pad(x, pads)
    w_taps = F.pad(weight, [before, after] * 3)
    out_channels = weight.shape[0]
    w_taps = w_taps.reshape(out_channels, channels, blocks, 2, blocks, 2, blocks, 2)
    w_taps = w_taps.permute(0, 1, 3, 5, 7, 2, 4, 6).reshape(
        out_channels, channels * 8, blocks, blocks, blocks
    )
    return F.conv3d(x, w_taps.contiguous(memory_format=torch.channels_last_3d))


class StemConv3d(nn.Conv3d):
    """A stride-2 ``nn.Conv3d`` without bias that runs as :func:`space_to_depth_conv`.

    The path is faster on the CPU too (1.5 s -> 1.0 s forward and backward of 4 scans at
    121x145x121 on 2 threads); ``space_to_depth = False`` runs the direct convolution, the
    baseline of the benchmarks.
    """

    space_to_depth: bool = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int):
        super().__init__(in_channels, out_channels, kernel_size, 2, padding, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.space_to_depth:
            return super().forward(x)
        return space_to_depth_conv(x, self.weight, self.padding[0])


@contextmanager
def direct_stems(model: nn.Module) -> Iterator[None]:
    """Run ``model``'s stems as direct convolutions inside the block: what a FLOP counter
    should see, since the space-to-depth path's zero taps are not the network's work."""
    stems = [m for m in model.modules() if isinstance(m, StemConv3d)]
    saved = [stem.space_to_depth for stem in stems]
    for stem in stems:
        stem.space_to_depth = False
    try:
        yield
    finally:
        for stem, value in zip(stems, saved, strict=True):
            stem.space_to_depth = value
