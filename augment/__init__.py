"""Data loading and augmentation for the model zoo."""

from augment.datasets import (
    DATA_DIR_ENV,
    Dataset,
    channel_stats,
    list_datasets,
    load_dataset,
    read_idx,
    write_idx,
)
from augment.layers import PCALighting, RandomPadCrop, pca_lighting_stats
from augment.pipelines import (
    PRESETS,
    AugmentedModel,
    AugmentSpec,
    build_augmenter,
    make_dataset,
    resolve_spec,
)
from augment.tta import TTAModel, evaluate_tta, make_views

__all__ = [
    "DATA_DIR_ENV", "Dataset", "channel_stats", "list_datasets", "load_dataset",
    "read_idx", "write_idx", "PCALighting", "RandomPadCrop",
    "pca_lighting_stats", "PRESETS", "AugmentedModel", "AugmentSpec", "build_augmenter",
    "make_dataset", "resolve_spec", "TTAModel", "evaluate_tta", "make_views",
]
