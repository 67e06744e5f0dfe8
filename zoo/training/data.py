"""The data of a run: loaded, padded, split, normalized, and fed to `fit`.

`prepare_data(config)` returns plain arrays (uint8 for the augmentation
pipelines, normalized float32 for the rest); `fit_inputs` turns them into what
`fit` takes: the arrays, a tf.data pipeline (`augment_device="host"`) or an
`augment.pipelines.AugmentedModel` fed uint8 batches (`"device"`).
"""

import keras
import numpy as np

from augment import datasets, pipelines
from augment import layers as augment_layers


def prepare_data(config, normalization=None):
    """Loads the dataset, pads, normalizes with training-split statistics and
    holds out a seeded validation split. Returns a dict of arrays and facts.

    Args:
        config: the run's `TrainConfig` (dataset, data_dir, classes, limits,
            seed, image_size, val_split).
        normalization: {"mean", "std"} to use instead of the training split's
            (a fine-tuning run keeps its source model's).
    """
    ds = datasets.load_dataset(config.dataset, config.data_dir, limit_train=config.limit_train,
                               limit_test=config.limit_test, seed=config.seed,
                               classes=config.classes)
    x_train, x_test = ds.x_train, ds.x_test
    if config.image_size:
        x_train, x_test = datasets.pad_to(x_train, config.image_size), datasets.pad_to(
            x_test, config.image_size)
    mean, std = datasets.channel_stats(x_train)
    if normalization:
        mean, std = (np.asarray(normalization[k], np.float32) for k in ("mean", "std"))
    y_train, y_test = ds.y_train, ds.y_test
    x_val = y_val = None
    if config.val_split:
        order = np.random.default_rng(config.seed).permutation(len(x_train))
        n_val = max(1, int(round(len(x_train) * config.val_split)))
        val, train = order[:n_val], order[n_val:]
        x_val, y_val = x_train[val], y_train[val]
        x_train, y_train = x_train[train], y_train[train]

    def onehot(y):
        return None if y is None else keras.utils.to_categorical(y, ds.num_classes).astype("float32")

    def norm(x):
        return None if x is None else datasets.normalize(x, mean, std)

    return {
        "x_train_raw": x_train, "x_val_raw": x_val,  # uint8, for the augmentation pipelines
        "x_train": norm(x_train), "y_train": onehot(y_train),
        "x_val": norm(x_val), "y_val": onehot(y_val),
        "x_test": norm(x_test), "y_test": onehot(y_test),
        "num_classes": ds.num_classes, "input_shape": tuple(x_train.shape[1:]),
        "mean": mean.tolist(), "std": std.tolist(), "source": ds.source,
        "class_names": ds.class_names,
    }


def fit_inputs(config, model, data):
    """The model to fit and its data: the normalized arrays without augmentation,
    a tf.data pipeline (`augment_device='host'`), or the model wrapped in an
    `augment.pipelines.AugmentedModel` fed uint8 batches (`'device'`; the
    caller compiles the wrapper).

    Returns (fit_model, keyword arguments for fit_model.fit).
    """
    has_val = data["x_val"] is not None
    spec = pipelines.resolve_spec(config.augment, config.augment_options)
    plain = dict(x=data["x_train"], y=data["y_train"], batch_size=config.batch_size,
                 validation_data=(data["x_val"], data["y_val"]) if has_val else None)
    if spec == pipelines.PRESETS["none"]:
        return model, plain
    pca_stats = augment_layers.pca_lighting_stats(data["x_train_raw"], seed=config.seed) \
        if spec.pca_lighting else None
    augmenter = pipelines.build_augmenter(
        spec, mean=data["mean"], std=data["std"], image_shape=data["input_shape"],
        dataset=config.dataset, pca_stats=pca_stats, seed=config.seed)
    if config.augment_device == "host":
        train_ds = pipelines.make_dataset(data["x_train_raw"], data["y_train"], augmenter,
                                          batch_size=config.batch_size, seed=config.seed)
        return model, {**plain, "x": train_ds, "y": None, "batch_size": None, "shuffle": False}
    wrapper = pipelines.AugmentedModel(model, augmenter, name=f"{model.name}_augmented")
    x = data["x_train_raw"]
    x = {"images": x, "labels": data["y_train"]} if spec.mixes_labels else x
    return wrapper, {**plain, "x": x,
                     "validation_data": (data["x_val_raw"], data["y_val"]) if has_val else None}
