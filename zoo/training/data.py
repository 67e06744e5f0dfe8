"""The data of a run: loaded as uint8 images, split, described by the input
contract the model will carry, and fed to `fit`.

`prepare_data(config)` returns the raw uint8 images at their own size (no
float copy is kept: the model fits and normalizes its input itself,
`zoo.contract.Classifier`) and the `InputContract` of the run: the training
part's normalization statistics (with `--weights`, the weights' own), the
network's input size, the class names. `fit_inputs` turns them into what
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
from zoo.contract import InputContract
from zoo.resolve import bad_option
from zoo.training import builder


def prepare_data(config, min_size=None):
    """Loads the dataset and holds out a seeded validation split. Returns a
    dict of uint8 images ("x_train", "x_val", "x_test"), one-hot labels, and
    facts: "contract" (the `InputContract` the model will carry),
    "input_shape" (the network's), "image_size" (the side images are fitted
    to, or None), "num_classes", "class_names", "source".

    The normalization statistics are the training part's alone (the
    validation images stay unseen), of the images as the network sees them
    (MNIST zero-padded to 32x32 for LeNet-5); with ImageNet weights
    (`config.weights`) they are the weights' own and images are resized
    (and grayscale repeated to RGB) rather than padded.

    Args:
        config: the run's `TrainConfig` (dataset, data_dir, classes, limits,
            seed, image_size, val_split, weights, and the model for `fit_size`).
        min_size: the smallest side the model takes, when it is not the
            config's model (a fine-tuned network's input).
    """
    ds = datasets.load_dataset(config.dataset, config.data_dir, limit_train=config.limit_train,
                               limit_test=config.limit_test, seed=config.seed,
                               classes=config.classes)
    x_train, y_train = ds.x_train, ds.y_train
    raw_shape = tuple(int(d) for d in x_train.shape[1:])
    channels = 3 if config.weights else raw_shape[-1]
    size = fit_size(config, (*raw_shape[:2], channels), min_size)
    if size is not None and not config.weights and size < max(raw_shape[:2]):
        raise bad_option("image_size", size, f"at least the images' {raw_shape[0]}x"
                         f"{raw_shape[1]}: padding cannot shrink an image")
    x_val = y_val = None
    if config.val_split:
        order = np.random.default_rng(config.seed).permutation(len(x_train))
        n_val = max(1, int(round(len(x_train) * config.val_split)))
        val, train = order[:n_val], order[n_val:]
        x_val, y_val = x_train[val], y_train[val]
        x_train, y_train = x_train[train], y_train[train]
    if config.weights:
        stats = pretrained.preprocessing(config.model, config.weights)
        mean, std = stats["mean"], stats["std"]
    else:
        fits = size is not None and max(raw_shape[:2]) <= size
        mean, std = datasets.channel_stats(x_train, (size, size) if fits else None)
    class_names = ds.class_names or [str(i) for i in range(ds.num_classes)]
    contract = InputContract(raw_shape, mean, std, fit="resize" if config.weights else "pad",
                             class_names=class_names, dataset=ds.name, classes=config.classes)

    def onehot(y):
        return None if y is None else keras.utils.to_categorical(y, ds.num_classes).astype("float32")

    return {
        "x_train": x_train, "y_train": onehot(y_train),
        "x_val": x_val, "y_val": onehot(y_val),
        "x_test": ds.x_test, "y_test": onehot(ds.y_test),
        "num_classes": ds.num_classes, "class_names": class_names,
        "input_shape": ((size, size) if size else raw_shape[:2]) + (channels,),
        "contract": contract, "source": ds.source, "image_size": size,
    }


def fit_size(config, image_shape, min_size=None, log=print):
    """The side the model fits images to (zero-padded centrally, as LeNet-5's
    paper pads MNIST; resized with ImageNet weights), or None to keep them:
    `config.image_size` when given, else the model's minimum
    (`zoo.min_input_size`) when the images are smaller, said in one line."""
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
        how = ("resizes", "bilinear, as the ImageNet weights expect") if config.weights else (
            "pads", "zeros, centred")
        log(f"{config.model} takes images of at least {min_size}x{min_size}: the model {how[0]} "
            f"the {height}x{width} images to {size}x{size} ({how[1]}; --image-size sets "
            "another size)", file=sys.stderr)
    return size


def fit_inputs(config, model, data):
    """The model to fit and its data: the uint8 arrays without augmentation,
    a tf.data pipeline (`augment_device='host'`), or the model wrapped in an
    `augment.pipelines.AugmentedModel` fed uint8 batches (`'device'`; the
    caller compiles the wrapper). The augmentation works on pixel values; the
    model normalizes them.

    Returns (fit_model, keyword arguments for fit_model.fit).
    """
    has_val = data["x_val"] is not None
    spec = pipelines.resolve_spec(config.augment, config.augment_options)
    plain = dict(x=data["x_train"], y=data["y_train"], batch_size=config.batch_size,
                 validation_data=(data["x_val"], data["y_val"]) if has_val else None)
    if spec == pipelines.PRESETS["none"]:
        return model, plain
    pca_stats = augment_layers.pca_lighting_stats(data["x_train"], seed=config.seed) \
        if spec.pca_lighting else None
    image_shape = data["x_train"].shape[1:]
    mean = data["contract"].mean
    augmenter = pipelines.build_augmenter(
        spec, image_shape=image_shape, mean=mean if len(mean) == image_shape[-1] else None,
        dataset=config.dataset, pca_stats=pca_stats, seed=config.seed)
    if config.augment_device == "host":
        train_ds = pipelines.make_dataset(data["x_train"], data["y_train"], augmenter,
                                          batch_size=config.batch_size, seed=config.seed)
        return model, {**plain, "x": train_ds, "y": None, "batch_size": None, "shuffle": False}
    wrapper = pipelines.AugmentedModel(model, augmenter, name=f"{model.name}_augmented")
    x = data["x_train"]
    x = {"images": x, "labels": data["y_train"]} if spec.mixes_labels else x
    return wrapper, {**plain, "x": x}
