"""3D encoders sharing one interface (see :class:`yaware.models.base.Backbone3D`)."""

from collections.abc import Callable
from functools import partial

from yaware.errors import ConfigError
from yaware.models.base import Backbone3D
from yaware.models.densenet import DENSENET_BLOCKS, DenseNet3D, build_densenet, densenet121
from yaware.models.resnet import MEDICALNET, ResNet3D, medicalnet_resnet, resnet18
from yaware.models.tinycnn import TinyCNN3D, tinycnn

ENCODERS: dict[str, Callable[..., Backbone3D]] = {
    **{name: partial(build_densenet, name) for name in DENSENET_BLOCKS},
    "resnet18": resnet18,
    "tinycnn": tinycnn,
    **{name: partial(medicalnet_resnet, name) for name in MEDICALNET},
}
# The DenseNets: their dense blocks take gradient checkpointing (memory_efficient), and a
# trunk may end with norm5 (final_norm).
DENSENETS = tuple(DENSENET_BLOCKS)


def build_model(name: str, mode: str = "encoder", num_classes: int = 2, **kwargs) -> Backbone3D:
    """Build a registered backbone by name (see ``ENCODERS``)."""
    if name not in ENCODERS:
        raise ConfigError(f"encoder: unknown encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    model = ENCODERS[name](mode=mode, num_classes=num_classes, **kwargs)
    model.encoder_name = name  # the input size it takes: yaware.data.grid.SMALLEST_SIDE
    return model


def build_encoder(name: str, mode: str = "encoder", memory_efficient: bool = False) -> Backbone3D:
    """A backbone for training: gradient checkpointing where asked for and the encoder has
    it (the DenseNets); ignored for the others."""
    wanted = memory_efficient and name in DENSENETS
    return build_model(name, mode, **({"memory_efficient": True} if wanted else {}))


__all__ = [
    "DENSENETS",
    "ENCODERS",
    "Backbone3D",
    "DenseNet3D",
    "ResNet3D",
    "TinyCNN3D",
    "build_encoder",
    "build_model",
    "densenet121",
    "resnet18",
    "tinycnn",
]
