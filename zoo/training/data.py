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

import dataclasses
import sys

import keras
import numpy as np

import zoo
from augment import datasets, pipelines, streams, transforms
from augment import layers as augment_layers
from zoo import pretrained
from zoo.contract import InputContract
from zoo.resolve import bad_option
from zoo.training import builder, distribute

# Streamed datasets (folder, tfrecord): the transforms when neither the flags
# nor the family's recipe name one; training images the normalization
# statistics are estimated on; images for BatchNorm re-estimation and PCA lighting.
DEFAULT_TRAIN_TRANSFORM = "inception"
DEFAULT_EVAL_TRANSFORM = "center"
STATS_IMAGES = 5000
BN_IMAGES = 10_000
PCA_IMAGES = 2000


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
                               classes=config.classes, bad_images=config.bad_images)
    if ds.streaming:
        return prepare_stream(config, ds)
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
        return None if y is None else keras.utils.to_categorical(y,
                                                                 ds.num_classes).astype("float32")

    return {
        "x_train": x_train, "y_train": onehot(y_train),
        "x_val": x_val, "y_val": onehot(y_val),
        "x_test": ds.x_test, "y_test": onehot(ds.y_test),
        "num_classes": ds.num_classes, "class_names": class_names,
        "input_shape": ((size, size) if size else raw_shape[:2]) + (channels,),
        "contract": contract, "source": ds.source, "image_size": size,
    }


def prepare_stream(config, ds):
    """`prepare_data` for a streamed dataset (`datasets.STREAMING`): "x_train",
    "x_val", "x_test" are `augment.streams.Stream`s (their labels come with
    their images: "y_*" are None until a prediction fills them, `predict`);
    the contract is for crops of `image_size` (the model's default input
    when not given), fitted by the eval transform's rule, normalized with the
    weights' statistics or those of `STATS_IMAGES` training images."""
    options = {k: v for k, v in builder.model_options(config).items() if v is not None}
    if config.weights:
        options = {**pretrained.architecture(config.model, config.weights), **options}
    size = config.image_size or zoo.default_input_shape(config.model, **options)[0]
    spec = pipelines.resolve_spec(config.augment, config.augment_options)
    train_transform = config.train_transform or DEFAULT_TRAIN_TRANSFORM
    eval_transform = config.eval_transform or DEFAULT_EVAL_TRANSFORM
    common = dict(num_classes=ds.num_classes, size=size, seed=config.seed,
                  shard=distribute.worker_share(config.strategy))
    train, val = ds.train, None
    if config.val_split:
        train, val = train.holdout(config.val_split, config.seed)
    x_train = streams.Stream(train, transform=train_transform, training=True,
                             flip=spec.flip is not False, cache=config.data_cache,
                             service=config.data_service, **common)
    evaluation = dict(transform=eval_transform, cache=config.data_cache, **common)
    x_val = streams.Stream(val, **evaluation) if val is not None else None
    x_test = streams.Stream(ds.test, **{**evaluation, "shard": None})
    if config.weights:
        stats = pretrained.preprocessing(config.model, config.weights)
        mean, std = stats["mean"], stats["std"]
    else:
        mean, std = stream_stats(streams.Stream(train, transform=eval_transform, **common))
    contract = InputContract((size, size, 3), mean, std,
                             fit=transforms.CONTRACT_FIT[eval_transform],
                             class_names=ds.class_names, dataset=ds.name, classes=config.classes)
    return {
        "x_train": x_train, "y_train": None, "x_val": x_val, "y_val": None,
        "x_test": x_test, "y_test": None, "num_classes": ds.num_classes,
        "class_names": ds.class_names, "input_shape": (size, size, 3), "contract": contract,
        "source": ds.source, "image_size": size, "bad_files": len(ds.bad_files),
    }


def stream_stats(stream, count=None):
    """Per-channel mean and std of `x / 255` over the first `count` images
    (`STATS_IMAGES`) of a stream, batch by batch (constant memory)."""
    total = total_sq = None
    pixels = 0
    for images, _ in stream.batches(256, limit=count or STATS_IMAGES):
        values = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
        total = values.sum(0) + (0 if total is None else total)
        total_sq = np.square(values).sum(0) + (0 if total_sq is None else total_sq)
        pixels += len(values)
    mean = total / pixels
    return mean.astype(np.float32), np.sqrt(np.maximum(total_sq / pixels - mean ** 2,
                                                       0.0)).astype(np.float32)


def is_stream(x):
    return isinstance(x, streams.Stream)


def predict(model, data, split, batch_size=256):
    """The probabilities of `model` on a split ("train", "val", "test") of
    `data`. A stream's labels come with its images (a file dropped while
    decoding cannot misalign them): they fill `data["y_<split>"]`."""
    x = data[f"x_{split}"]
    if not is_stream(x):
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    probs, labels = [], []
    for images, ints in x.batches(batch_size):
        probs.append(keras.ops.convert_to_numpy(model.predict_on_batch(images)))
        labels.append(ints)
    probs, labels = np.concatenate(probs), np.concatenate(labels)
    known = data.get(f"y_{split}")
    if known is None or len(known) != len(labels):
        data[f"y_{split}"] = keras.utils.to_categorical(labels, data["num_classes"]).astype(
            "float32")
    return probs


def head(data, split, count):
    """(uint8 images, one-hot labels) of the first `count` images of a split,
    as arrays (checks, monitors, statistics)."""
    x = data[f"x_{split}"]
    if not is_stream(x):
        return x[:count], data[f"y_{split}"][:count]
    parts = list(x.batches(min(count, 256), limit=count))
    images = np.concatenate([p[0] for p in parts])
    labels = keras.utils.to_categorical(np.concatenate([p[1] for p in parts]),
                                        data["num_classes"]).astype("float32")
    return images, labels


def batch_norm_images(data, batch_size=256):
    """The training images BatchNorm statistics are re-estimated on (EMA,
    SWA): the array, or `BN_IMAGES` images of a stream batch by batch."""
    x = data["x_train"]
    if not is_stream(x):
        return x
    return (images for images, _ in x.batches(batch_size, limit=BN_IMAGES))


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
    if is_stream(data["x_train"]):
        return fit_stream(config, model, data, spec)
    plain = dict(x=data["x_train"], y=data["y_train"], batch_size=config.batch_size,
                 validation_data=(data["x_val"], data["y_val"]) if has_val else None)
    if spec == pipelines.PRESETS["none"]:
        return model, plain
    augmenter = make_augmenter(config, data, spec, data["x_train"])
    if config.augment_device == "host":
        train_ds = pipelines.make_dataset(data["x_train"], data["y_train"], augmenter,
                                          batch_size=config.batch_size, seed=config.seed)
        return model, {**plain, "x": train_ds, "y": None, "batch_size": None, "shuffle": False}
    wrapper = pipelines.AugmentedModel(model, augmenter, name=f"{model.name}_augmented")
    x = data["x_train"]
    x = {"images": x, "labels": data["y_train"]} if spec.mixes_labels else x
    return wrapper, {**plain, "x": x}


def fit_stream(config, model, data, spec):
    """`fit_inputs` for streams: the training pipeline (augmented on the host,
    or by an `AugmentedModel` on the device), `steps_per_epoch` batches an
    epoch, the validation pipeline."""
    stream = data["x_train"]
    # The train transform crops and flips: the preset adds its other pieces
    # (PCA lighting, erasing, RandAugment, mixup, CutMix), a crop only when asked.
    spec = dataclasses.replace(spec, flip=False,
                               crop_padding=config.augment_options.get("crop_padding", 0))
    augmenter = None
    if spec != pipelines.PRESETS["none"]:
        images, _ = head(data, "train", PCA_IMAGES if spec.pca_lighting else 1)
        augmenter = make_augmenter(config, data, spec, images)
    device = augmenter is not None and config.augment_device == "device"
    train_ds = stream.dataset(config.batch_size, None if device else augmenter)
    fit_model = model
    if device:
        fit_model = pipelines.AugmentedModel(model, augmenter, name=f"{model.name}_augmented")
        if spec.mixes_labels:
            train_ds = train_ds.map(lambda x, y: ({"images": x, "labels": y}, y))
    val = data["x_val"]
    validation = {"validation_data": val.dataset(config.batch_size, repeat=True),
                  "validation_steps": val.steps(config.batch_size)} if val else {}
    return fit_model, {"x": train_ds, "y": None, "batch_size": None, "shuffle": False,
                       "steps_per_epoch": stream.steps(config.batch_size), **validation}


def make_augmenter(config, data, spec, images):
    """The augmentation stack of `spec` for training images like `images`."""
    pca_stats = augment_layers.pca_lighting_stats(images, seed=config.seed) \
        if spec.pca_lighting else None
    image_shape = images.shape[1:]
    mean = data["contract"].mean
    return pipelines.build_augmenter(
        spec, image_shape=image_shape, mean=mean if len(mean) == image_shape[-1] else None,
        dataset=config.dataset, pca_stats=pca_stats, seed=config.seed)
