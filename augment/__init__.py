"""Data loading and augmentation for the model zoo."""

from augment.datasets import (
    DATA_DIR_ENV,
    Dataset,
    channel_stats,
    list_datasets,
    load_dataset,
    normalize,
    pad_to,
    read_idx,
    write_idx,
)
