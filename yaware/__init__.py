"""y-Aware contrastive learning on 3D brain MRI."""

__version__ = "0.1.0"
