"""Which registered encoder a state dict holds, read from its layer names.

For checkpoints that record no encoder (the released y-Aware file, MONAI's DenseNets,
MedicalNet's ResNets, a bare state dict): the dense layers per block tell a DenseNet's
depth, the blocks per stage and their kind a ResNet's, and a ResNet whose trunk is not
under ``features.`` is MedicalNet's (its files, and MONAI's ResNet that loads them, name
the layers ``conv1``, ``bn1``, ``layer1``-``layer4``). Names anywhere in a key count, so an
encoder nested in a larger module is recognised too.
"""

import re
from collections import defaultdict
from collections.abc import Iterable

from yaware.models.densenet import DENSENET_BLOCKS
from yaware.models.resnet import MEDICALNET, RESNETS
from yaware.models.tinycnn import WIDTHS as TINYCNN_WIDTHS

DENSE_LAYER = re.compile(r"(?:^|\.)denseblock(\d+)\.denselayer(\d+)\.")
RESNET_CONV = re.compile(r"(?:^|\.)(features\.)?layer([1-4])\.(\d+)\.conv([123])\.weight$")
TINYCNN_CONV = re.compile(r"(?:^|\.)features\.conv(\d+)\.weight$")

_DENSENETS = {blocks: name for name, blocks in DENSENET_BLOCKS.items()}


def recognise_encoder(keys: Iterable[str]) -> str | None:
    """The registered encoder whose layout the state-dict ``keys`` hold, or None."""
    keys = list(keys)
    return _densenet(keys) or _resnet(keys) or _tinycnn(keys)


def _densenet(keys: list[str]) -> str | None:
    layers: dict[int, int] = defaultdict(int)
    for key in keys:
        if match := DENSE_LAYER.search(key):
            block, layer = int(match[1]), int(match[2])
            layers[block] = max(layers[block], layer)
    if not layers:
        return None
    return _DENSENETS.get(tuple(layers[b] for b in range(1, max(layers) + 1)))


def _resnet(keys: list[str]) -> str | None:
    """By blocks per stage and their kind; the shortcut (B has weights, A none) tells our
    ResNet-18 from MedicalNet's when both are under ``features.``."""
    blocks: dict[int, int] = defaultdict(int)
    prefixed, bottleneck = set(), False
    for key in keys:
        if match := RESNET_CONV.search(key):
            prefixed.add(bool(match[1]))
            stage, block = int(match[2]), int(match[3])
            blocks[stage] = max(blocks[stage], block + 1)
            bottleneck |= match[4] == "3"
    if len(prefixed) != 1:  # none, or a trunk under features. beside one that is not
        return None
    family = RESNETS | MEDICALNET if prefixed.pop() else MEDICALNET
    layout = ("bottleneck" if bottleneck else "basic", tuple(blocks[s] for s in range(1, 5)))
    names = [name for name, (*spec, _) in family.items() if tuple(spec) == layout]
    shortcut = "B" if any(".downsample." in key for key in keys) else "A"
    return next((n for n in names if family[n][2] == shortcut), names[0] if names else None)


def _tinycnn(keys: list[str]) -> str | None:
    convs = {int(m[1]) for key in keys if (m := TINYCNN_CONV.search(key))}
    return "tinycnn" if convs == set(range(len(TINYCNN_WIDTHS))) else None
