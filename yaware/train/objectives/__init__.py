"""Pretraining objectives, one per method: what the training engine trains, and on what."""

from yaware.train.objectives.age_supervision import AgeSupervisionObjective
from yaware.train.objectives.base import Objective, PretrainNetwork
from yaware.train.objectives.decoupled_uniformity import DecoupledUniformityObjective
from yaware.train.objectives.model_genesis import ModelGenesisObjective
from yaware.train.objectives.rank_n_contrast import RankNContrastObjective
from yaware.train.objectives.simclr import SimCLRObjective
from yaware.train.objectives.y_aware import YAwareObjective

OBJECTIVES: dict[str, type[Objective]] = {
    "simclr": SimCLRObjective,
    "yaware": YAwareObjective,
    "age_supervision": AgeSupervisionObjective,
    "model_genesis": ModelGenesisObjective,
    "threshold": YAwareObjective,  # y-Aware InfoNCE with another denominator
    "expw": YAwareObjective,
    "rank_n_contrast": RankNContrastObjective,
    "decoupled_uniformity": DecoupledUniformityObjective,
}

__all__ = ["OBJECTIVES", "Objective", "PretrainNetwork"]
