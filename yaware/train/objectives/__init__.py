"""Pretraining objectives, one per method: what the training engine trains, and on what."""

from yaware.train.objectives.age_supervision import AgeSupervisionObjective
from yaware.train.objectives.base import Objective, PretrainNetwork
from yaware.train.objectives.model_genesis import ModelGenesisObjective
from yaware.train.objectives.simclr import SimCLRObjective
from yaware.train.objectives.y_aware import YAwareObjective

OBJECTIVES: dict[str, type[Objective]] = {
    "simclr": SimCLRObjective,
    "yaware": YAwareObjective,
    "age_supervision": AgeSupervisionObjective,
    "model_genesis": ModelGenesisObjective,
}

__all__ = ["OBJECTIVES", "Objective", "PretrainNetwork"]
