"""Each batch's copy to the GPU and its augmentation, queued on a second CUDA stream.

On one stream the step's kernels and the next batch's augmentation run one after the
other: the augmentation (a few tens of ms for 64 views at 121x145x121) and the copy from
pinned memory add to every step. On a side stream they are queued as soon as the host has
queued the step before, and the GPU runs them while that step's kernels still execute;
the step that uses the views waits for them with an event, never the host.

Nothing is drawn ahead: batch i is prepared when the loop asks for it, after step i - 1
was queued (and after its stop check), so the augmentation's random state in a checkpoint
is the one an unstaged loop would save, and the views are the same numbers.
"""

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

import torch

Batch = TypeVar("Batch")
Prepared = tuple[torch.Tensor, ...]


def staged(
    batches: Iterable[Batch],
    prepare: Callable[[Batch], Prepared],
    device: torch.device,
    side_stream: bool = True,
) -> Iterator[Prepared]:
    """``prepare(batch)`` for each batch; on CUDA on a side stream, ordered before the
    caller's next kernels on the current stream."""
    if device.type != "cuda" or not side_stream:
        for batch in batches:
            yield prepare(batch)
        return
    side = torch.cuda.Stream(device)
    for batch in batches:
        with torch.cuda.stream(side):
            prepared = prepare(batch)
        current = torch.cuda.current_stream(device)
        current.wait_stream(side)
        for tensor in prepared:
            # Made on the side stream, used on the current one: the allocator must not hand
            # its memory to the side stream's next batch before the current stream is done.
            tensor.record_stream(current)
        yield prepared
