"""The data of a run: loaded, padded (resized for ImageNet weights), split,
normalized, and fed to `fit`.

`prepare_data(config)` returns plain arrays (uint8 for the augmentation
pipelines, normalized float32 for the rest); `fit_inputs` turns them into what
`fit` takes: the arrays, a tf.data pipeline (`augment_device="host"`) or an
`augment.pipelines.AugmentedModel` fed uint8 batches (`"device"`).
"""

import sys

import keras
import numpy as np

import zoo
from augment import datasets, pipelines
from augment import layers as augment_layers
from zoo import pretrained
from zoo.training import builder

RESIZE_CHUNK = 256  # images resized at a time


def prepare_data(config, normalization=None, min_size=None):
    """Loads the dataset, pads, holds out a seeded validation split and
    normalizes with the statistics of the training part alone. Returns a dict
    of arrays and facts ("image_size": the side images were padded to, or None).

    With ImageNet weights (`config.weights`) the images are what the weights
    expect: grayscale repeated to RGB, resized rather than padded, normalized
    with the weights' mean and std (`zoo.pretrained.preprocessing`).

    Args:
        config: the run's `TrainConfig` (dataset, data_dir, classes, limits,
            seed, image_size, val_split, weights, and the model for `fit_size`).
        normalization: {"mean", "std"} to use instead of the training part's
            (a fine-tuning run keeps its source model's).
        min_size: the smallest side the model takes, when it is not the
            config's model (a fine-tuned network's input).
    """
    ds = datasets.load_dataset(config.dataset, config.data_dir, limit_train=config.limit_train,
                               limit_test=config.limit_test, seed=config.seed,
                               classes=config.classes)
    x_train, x_test = ds.x_train, ds.x_test
    if config.weights:
        x_train, x_test = to_rgb(x_train), to_rgb(x_test)
    size = fit_size(config, x_train.shape[1:], min_size)
    if size:
        fit = resize if config.weights else datasets.pad_to
        x_train, x_test = fit(x_train, size), fit(x_test, size)
    y_train, y_test = ds.y_train, ds.y_test
    x_val = y_val = None
    if config.val_split:
        order = np.random.default_rng(config.seed).permutation(len(x_train))
        n_val = max(1, int(round(len(x_train) * config.val_split)))
        val, train = order[:n_val], order[n_val:]
        x_val, y_val = x_train[val], y_train[val]
        x_train, y_train = x_train[train], y_train[train]
    if normalization is None and config.weights:
        normalization = pretrained.preprocessing(config.model, config.weights)
    if normalization:
        mean, std = (np.asarray(normalization[k], np.float32) for k in ("mean", "std"))
    else:
        mean, std = datasets.channel_stats(x_train)  # the validation images stay unseen

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
        "class_names": ds.class_names, "image_size": size,
    }


def fit_size(config, image_shape, min_size=None, log=print):
    """The side to zero-pad images to (centred, as LeNet-5's paper pads MNIST;
    resized with ImageNet weights), or None to keep them: `config.image_size`
    when given, else the model's minimum (`zoo.min_input_size`) when the
    images are smaller, said in one line."""
    if config.image_size:
        return config.image_size
    height, width, channels = image_shape
    if min_size is None:
        options = {k: v for k, v in builder.model_options(config).items() if v is not None}
        if config.weights:
            options = {**pretrained.architecture(config.model, config.weights), **options}
        min_size = zoo.min_input_size(config.model, channels=channels, **options)
    if min(height, width) >= min_size:
        return None
    size = max(height, width, min_size)
    if log:
        how = ("resizing", "bilinear, as the ImageNet weights expect") if config.weights else (
            "padding", "zeros, centred")
        log(f"{config.model} takes images of at least {min_size}x{min_size}: {how[0]} the "
            f"{height}x{width} images to {size}x{size} ({how[1]}; --image-size sets "
            "another size)", file=sys.stderr)
    return size


def run_preprocessing(stored):
    """uint8 images -> a model's input, as the run whose config.json is `stored`
    prepared its test images: RGB and resized for ImageNet weights, else padded
    to its image size; its normalization."""
    mean, std = stored["normalization"]["mean"], stored["normalization"]["std"]
    size, weights = stored.get("image_size"), stored.get("weights")

    def preprocess(images):
        if weights:
            images = to_rgb(images)
        if size and images.shape[1:3] != (size, size):
            images = (resize if weights else datasets.pad_to)(images, size)
        return datasets.normalize(images, mean, std)

    return preprocess


def to_rgb(x):
    """Grayscale images repeated to three channels (ImageNet weights read RGB)."""
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def resize(x, size):
    """uint8 images resized to `size` x `size`: bilinear, antialiased when
    shrinking, as export's `FitToSize` resizes; rounded back to uint8, as a PIL
    resize in torchvision's transforms is."""
    out = np.empty((len(x), size, size, x.shape[-1]), np.uint8)
    for start in range(0, len(x), RESIZE_CHUNK):
        part = keras.ops.image.resize(x[start:start + RESIZE_CHUNK].astype(np.float32),
                                      (size, size), interpolation="bilinear", antialias=True)
        out[start:start + RESIZE_CHUNK] = np.clip(np.round(keras.ops.convert_to_numpy(part)),
                                                  0, 255)
    return out


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
