"""Ensembles and weight averaging for zoo models.

- `EnsembleModel`: independent-model ensembles combined by soft or hard voting,
  a validation-fitted weighted average or a geometric mean; one Keras model.
- `SnapshotEnsemble`: cyclic cosine annealing, one snapshot per cycle
  (Huang et al. 2017).
- Polyak/EMA (`ema_optimizer`, `ema_callbacks`, Keras' own `use_ema`) and SWA
  (`SWA`, `SWASchedule`, `recompute_batch_norm`; Izmailov et al. 2018).
- `metrics`: accuracy, NLL, Brier score, ECE and MCE; `calibration`: temperature
  scaling (Guo et al. 2017) that lives in the saved model; `Distiller`: one
  student trained on an ensemble's softened probabilities (Hinton et al. 2015).
"""

from ensembles import distill, metrics
from ensembles.averaging import SWA, SWASchedule, ema_callbacks, ema_optimizer, recompute_batch_norm
from ensembles.calibration import TemperatureScaling, apply_temperature, calibrated, fit_temperature
from ensembles.combine import METHODS, EnsembleModel, disagreement, fit_combination_weights
from ensembles.distill import Distiller
from ensembles.snapshot import (
                                 CyclicCosine,
                                 SnapshotEnsemble,
                                 SnapshotSaver,
                                 cyclic_cosine,
                                 load_snapshot_ensemble,
)

__all__ = [
    "Distiller", "TemperatureScaling", "apply_temperature", "calibrated", "distill",
    "fit_temperature", "metrics",
    "METHODS", "SWA", "EnsembleModel", "SWASchedule", "SnapshotEnsemble", "SnapshotSaver",
    "disagreement", "ema_callbacks", "ema_optimizer", "fit_combination_weights",
    "load_snapshot_ensemble", "recompute_batch_norm", "CyclicCosine", "cyclic_cosine",
]
