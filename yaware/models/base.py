"""The interface every 3D backbone shares: a pooled representation plus a head.

``mode="encoder"``: representation -> ``hidden_representation`` Linear(F, 512) -> ReLU ->
``head_projection`` Linear(512, 128) (the original's projection MLP).
``mode="classifier"``: representation -> ``classifier`` Linear(F, num_classes).
"""

import torch
import torch.nn.functional as F
from torch import nn

from yaware.errors import ConfigError

MODES = ("encoder", "classifier")


class Backbone3D(nn.Module):
    """Base class; subclasses build ``self.features`` and implement :meth:`representation`.

    Attributes:
        num_features: size F of the pooled representation.
        mode: ``"encoder"`` or ``"classifier"``.
        channels_last_on_cpu: train in channels-last 3D on the CPU too (always on CUDA);
            set by encoders measured faster so.
    """

    channels_last_on_cpu = False

    def __init__(
        self,
        num_features: int,
        mode: str = "encoder",
        num_classes: int = 2,
        hidden_dim: int = 512,
        out_dim: int = 128,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.num_features = num_features
        self.encoder_name = ""  # its ENCODERS name, set by build_model

    def _build_head(self, num_classes: int, hidden_dim: int, out_dim: int) -> None:
        """Called by subclasses after ``self.features``, so state-dict keys keep their order."""
        if self.mode == "encoder":
            self.hidden_representation = nn.Linear(self.num_features, hidden_dim)
            self.head_projection = nn.Linear(hidden_dim, out_dim)
        else:
            self.classifier = nn.Linear(self.num_features, num_classes)

    def before_compile(self) -> None:
        """Called before torch.compile wraps a network holding this backbone (layers that
        must stay out of the compiled graph are set up here)."""

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's last feature map (B, F, x, y, z)."""
        return self.features(x)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """The globally average-pooled feature map, shape (B, F), of a batch (B, C, X, Y, Z)."""
        return torch.flatten(F.adaptive_avg_pool3d(self.feature_map(x), 1), 1)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        if self.mode == "encoder":
            return self.head_projection(torch.relu(self.hidden_representation(h)))
        return self.classifier(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projections (B, out_dim) in encoder mode, logits (B, num_classes) otherwise."""
        return self.head(self.representation(x))


def init_weights(model: nn.Module) -> None:
    """The original's initialisation: Kaiming convolutions, unit BatchNorm, zero biases."""
    for module in model.modules():
        if isinstance(module, nn.Conv3d):
            nn.init.kaiming_normal_(module.weight)
        elif isinstance(module, nn.BatchNorm3d):
            nn.init.constant_(module.weight, 1)
            nn.init.constant_(module.bias, 0)
        elif isinstance(module, nn.Linear):
            nn.init.constant_(module.bias, 0)
