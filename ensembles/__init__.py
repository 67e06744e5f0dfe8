"""Ensembles and weight averaging for zoo models.

- `EnsembleModel`: independent-model ensembles combined by soft or hard voting,
  a validation-fitted weighted average or a geometric mean; one Keras model.
- `SnapshotEnsemble`: cyclic cosine annealing, one snapshot per cycle
  (Huang et al. 2017).
- Polyak/EMA (`ema_optimizer`, `ema_callbacks`, Keras' own `use_ema`) and SWA
  (`SWA`, `SWASchedule`, `recompute_batch_norm`; Izmailov et al. 2018).
"""

from ensembles.averaging import (SWA, SWASchedule, ema_callbacks, ema_optimizer,
                                 recompute_batch_norm)
from ensembles.combine import METHODS, EnsembleModel, disagreement, fit_combination_weights
from ensembles.snapshot import (CyclicCosine, SnapshotEnsemble, SnapshotSaver, cyclic_cosine,
                                load_snapshot_ensemble)

__all__ = [
    "METHODS", "SWA", "EnsembleModel", "SWASchedule", "SnapshotEnsemble", "SnapshotSaver",
    "disagreement", "ema_callbacks", "ema_optimizer", "fit_combination_weights",
    "load_snapshot_ensemble", "recompute_batch_norm", "CyclicCosine", "cyclic_cosine",
]
