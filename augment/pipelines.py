"""Augmentation presets, the tf.data pipeline builder and on-device augmentation.

One augmentation stack (a `keras.layers.Pipeline`) per run, built from a named
preset plus per-piece overrides (`AugmentSpec`), runs in either place:

- on the host: `make_dataset` shuffles, gathers batches with
  `num_parallel_calls=AUTOTUNE`, augments whole batches (in order, so a seed
  reproduces them, or in parallel) and prefetches (tf.data, TensorFlow backend);
- on the accelerator: `AugmentedModel` runs the stack inside the training step
  (any backend; the host then only ships uint8 batches).

Presets (papers):
- ``none``: no augmentation.
- ``standard``: pad 4 + random crop + horizontal flip (He et al. 2015, sec. 4.2;
  digits get no flip).
- ``alexnet``: random crops, flips and PCA lighting (Krizhevsky et al. 2012, sec. 4.1).
- ``strong``: standard + random erasing / cutout (Zhong et al. 2017; DeVries &
  Taylor 2017) + RandAugment with 2 ops (Cubuk et al. 2019).
- ``mixup``: standard + mixup, alpha 1 (Zhang et al. 2018, CIFAR setting).
- ``cutmix``: standard + CutMix, alpha 1 (Yun et al. 2019, CIFAR setting).

Order in the stack: crop, flip, PCA lighting, RandAugment, erasing, then
mixup / CutMix on images and one-hot labels, all on pixel values in [0, 255]:
the model normalizes its input itself (`zoo.contract.Classifier`).
"""

import dataclasses
import functools
import itertools
import math
import sys

import keras
import numpy as np

from augment import layers
from zoo.resolve import bad_option

PRESET_NAMES = ("none", "standard", "alexnet", "strong", "mixup", "cutmix")
DEVICES = ("host", "device")
# Datasets of digits, where a horizontal flip changes the class.
DIGIT_DATASETS = ("mnist", "mnist_sample")
# tf.data holds the source split as one in-memory tensor below this size (bytes).
CACHE_LIMIT_BYTES = 1024**3
RANDAUGMENT_MAX_OPS = 14  # Keras' RandAugment has 14 operations to choose from


@dataclasses.dataclass(frozen=True)
class AugmentSpec:
    """The pieces of an augmentation stack; 0 / False turns a piece off.

    Attributes:
        flip: random horizontal flip; None means on, except for digit datasets.
        crop_padding: pad this many pixels per side, then random crop (pixels).
        pca_lighting: std of alpha in AlexNet's PCA lighting (0.1 in the paper).
        erasing: probability of random erasing / cutout per image.
        randaugment: number of RandAugment operations per image batch.
        mixup: alpha of the Beta(alpha, alpha) mixup weight.
        cutmix: alpha of the Beta(alpha, alpha) CutMix area (Keras allows <= 1).
    """

    flip: bool | None = False
    crop_padding: int = 0
    pca_lighting: float = 0.0
    erasing: float = 0.0
    randaugment: int = 0
    mixup: float = 0.0
    cutmix: float = 0.0

    @property
    def mixes_labels(self):
        return bool(self.mixup or self.cutmix)

    def validate(self):
        """Raises ValueError naming the option, the value and what is accepted."""
        if self.flip not in (None, True, False):
            raise bad_option("flip", self.flip, "True, False or None (auto)")
        for name, high in (("crop_padding", 64), ("randaugment", RANDAUGMENT_MAX_OPS)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
                raise bad_option(name, value, f"an integer in [0, {high}] (0 turns it off)")
        checks = (("pca_lighting", 0.0, 10.0), ("erasing", 0.0, 1.0), ("mixup", 0.0, 100.0),
                  ("cutmix", 0.0, 1.0))
        for name, low, high in checks:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and low <= value <= high):
                raise bad_option(name, value, f"a number in [{low}, {high}] (0 turns it off)")
        return self


_STANDARD = dict(crop_padding=4, flip=None)
PRESETS = {
    "none": AugmentSpec(),
    "standard": AugmentSpec(**_STANDARD),
    "alexnet": AugmentSpec(**_STANDARD, pca_lighting=0.1),
    "strong": AugmentSpec(**_STANDARD, erasing=0.5, randaugment=2),
    "mixup": AugmentSpec(**_STANDARD, mixup=1.0),
    "cutmix": AugmentSpec(**_STANDARD, cutmix=1.0),
}
OPTION_NAMES = tuple(f.name for f in dataclasses.fields(AugmentSpec))


def resolve_spec(preset="none", options=None):
    """The preset's `AugmentSpec` with `options` (a dict of its fields) overriding it.

    Raises:
        ValueError: unknown preset or option, or a bad value; the message names
            it, the value and what is accepted.
    """
    if preset not in PRESETS:
        raise bad_option("augment", preset, f"one of {', '.join(PRESET_NAMES)}")
    options = {k: v for k, v in (options or {}).items() if v is not None or k == "flip"}
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise bad_option("augment option", unknown[0], f"one of {', '.join(OPTION_NAMES)}")
    return dataclasses.replace(PRESETS[preset], **options).validate()


def _float32_layers(build):
    """Builds the stack's layers in float32 whatever the global dtype policy:
    under mixed precision Keras' MixUp / CutMix fail on float16 / bfloat16
    images, and pixel arithmetic is cheap next to the network, whose first
    layer casts to its own compute dtype."""

    @functools.wraps(build)
    def wrapper(*args, **kwargs):
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("float32")
        try:
            return build(*args, **kwargs)
        finally:
            keras.config.set_dtype_policy(previous)

    return wrapper


@_float32_layers
def build_augmenter(spec, *, image_shape, mean=None, dataset=None, pca_stats=None, seed=0,
                    name="augmenter"):
    """The augmentation stack as one serializable `keras.layers.Pipeline`.

    It takes uint8 (or float) pixel values in [0, 255], either a tensor or
    ``{"images": ..., "labels": one-hot}`` (labels are needed for mixup/CutMix),
    and returns float32 pixel values (and mixed labels), also under a mixed
    precision policy; the model normalizes them.

    Args:
        spec: an `AugmentSpec` (`resolve_spec`).
        mean: per-channel mean of `x / 255` on the training split: random
            erasing fills with this pixel (None: mid-grey).
        image_shape: (H, W, C) of one image.
        dataset: the dataset name; decides `flip=None` (no flip for digits).
        pca_stats: (eigenvalues, eigenvectors) from `layers.pca_lighting_stats`,
            needed when `spec.pca_lighting` > 0.
        seed: base seed; the k-th random layer gets seed + k.
    """
    spec.validate()
    flip = spec.flip if spec.flip is not None else dataset not in DIGIT_DATASETS
    seeds = iter(range(seed, seed + 100))
    stack = []
    if spec.crop_padding:  # the flip rides in the crop's gather (see layers.RandomPadCrop)
        stack.append(layers.RandomPadCrop(spec.crop_padding, flip=flip, seed=next(seeds),
                                          name="pad_crop_flip" if flip else "pad_crop"))
    elif flip:
        stack.append(keras.layers.RandomFlip("horizontal", seed=next(seeds), name="flip"))
    if spec.pca_lighting:
        if pca_stats is None:
            raise ValueError("pca_lighting needs pca_stats=(eigenvalues, eigenvectors) from "
                             "augment.layers.pca_lighting_stats(training images)")
        stack.append(layers.PCALighting(*pca_stats, std=spec.pca_lighting, seed=next(seeds),
                                          name="pca_lighting"))
    if spec.randaugment and image_shape[-1] != 3:
        # Keras' RandAugment has colour operations only (no grayscale variant).
        print(f"augment: RandAugment left out: its colour operations need RGB images, these "
              f"have {image_shape[-1]} channel(s)", file=sys.stderr)
    elif spec.randaugment:
        stack.append(keras.layers.RandAugment(value_range=(0, 255), num_ops=spec.randaugment,
                                              seed=next(seeds), name="randaugment"))
    if spec.erasing:
        # Cutout-style fill with the mean pixel (0 after the model's normalization).
        fill = [255.0 * m for m in np.ravel(0.5 if mean is None else mean)]
        stack.append(keras.layers.RandomErasing(factor=spec.erasing, value_range=(0, 255),
                                                fill_value=fill if len(fill) == 3 else fill[0],
                                                seed=next(seeds), name="erasing"))
    if spec.mixup:
        stack.append(keras.layers.MixUp(alpha=spec.mixup, seed=next(seeds), name="mixup"))
    if spec.cutmix:
        stack.append(keras.layers.CutMix(factor=(spec.cutmix, spec.cutmix), seed=next(seeds),
                                         name="cutmix"))
    # An empty stack (the "none" preset) passes the images through unchanged.
    return keras.layers.Pipeline(stack or [keras.layers.Identity(name="identity")], name=name)


def apply_augmenter(augmenter, images, labels=None, training=True):
    """Runs the stack on a batch; returns (images, labels)."""
    if labels is None:
        return augmenter(images, training=training), None
    out = augmenter({"images": images, "labels": labels}, training=training)
    return out["images"], out["labels"]


def make_dataset(images, labels, augmenter=None, *, batch_size=128, shuffle=True, seed=0,
                 drop_remainder=False, cache=None, deterministic=True, jit_compile=True):
    """A `tf.data` pipeline over one split: shuffle, batch, augment, prefetch.

    Batches are gathered with `num_parallel_calls=AUTOTUNE`; the stack runs on
    whole batches (vectorized, on TensorFlow's intra-op threads), its
    XLA-compilable layers fused by XLA (`jit_compile`). A split below
    `CACHE_LIMIT_BYTES` is held once in memory as a tensor and each batch is one gather of shuffled
    indices; a larger one streams batches gathered in numpy. Shuffling is
    seeded (and reshuffled every epoch); the augmentation draws come from the
    stack's seeded layers. Their generators are stateful, so bit-for-bit
    reproducible draws need the batches augmented in order
    (`deterministic=True`); `deterministic=False` augments batches with
    `num_parallel_calls=AUTOTUNE` too (for many-core hosts; on this project's
    2-core machine both ran at the same speed).

    Args:
        images: uint8 images (N, H, W, C).
        labels: one-hot float32 labels (N, K), or None.
        augmenter: a stack from `build_augmenter` (None: batches as given).
        batch_size: images per batch.
        shuffle: shuffle every epoch.
        seed: shuffle seed.
        drop_remainder: drop the last partial batch (mixing needs >= 2 images).
        cache: hold the split as one tensor; None decides by size.
        deterministic: augment batches in order, so a seed reproduces them.
        jit_compile: compile each run of consecutive layers in `XLA_LAYERS`
            with XLA (one fused loop instead of an op per step: 1.4x the
            images/s of `standard` on this project's CPU); False runs them
            op by op.

    Returns:
        A `tf.data.Dataset` of (images, labels) or images batches.
    """
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow" and augmenter is not None:
        raise bad_option(
            "augment_device", "host",
            f"'device' under KERAS_BACKEND={keras.backend.backend()} (the tf.data pipeline runs "
            "the stack with the TensorFlow backend)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise bad_option("batch_size", batch_size, "an integer >= 1")
    if jit_compile not in (True, False):
        raise bad_option("jit_compile", jit_compile, "True or False")
    images = np.asarray(images)
    arrays = (images,) if labels is None else (images, np.asarray(labels, np.float32))
    if cache if cache is not None else sum(a.nbytes for a in arrays) < CACHE_LIMIT_BYTES:
        # The split is held in memory once; each batch is one gather of
        # shuffled indices (much faster than slicing and re-batching images).
        tensors = tuple(tf.constant(a) for a in arrays)
        ds = tf.data.Dataset.range(len(images))
        if shuffle:
            ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        ds = ds.map(lambda index: tuple(tf.gather(t, index) for t in tensors) if len(tensors) > 1
                    else tf.gather(tensors[0], index), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        ds = _generator_dataset(arrays, batch_size, shuffle, seed, drop_remainder)
    if augmenter is not None:
        parallel = None if deterministic else tf.data.AUTOTUNE
        run = _xla_stages(augmenter) if jit_compile else augmenter
        if labels is None:
            ds = ds.map(lambda x: run(x, training=True), num_parallel_calls=parallel)
        else:
            ds = ds.map(lambda x, y: apply_augmenter(run, x, y), num_parallel_calls=parallel)
    return ds.prefetch(tf.data.AUTOTUNE)


# Layers that XLA compiles on the CPU; Keras' MixUp, CutMix and RandAugment
# use random ops XLA lacks there (their `supports_jit` says True regardless).
XLA_LAYERS = (layers.RandomPadCrop, layers.PCALighting, keras.layers.RandomFlip,
              keras.layers.RandomErasing)


def xla_groups(augmenter):
    """The stack's layers as [(compilable, [layers])]: runs of consecutive
    `XLA_LAYERS`, and runs of the other layers, in order."""
    stack = augmenter.layers if isinstance(augmenter, keras.layers.Pipeline) else [augmenter]
    return [(compilable, list(group)) for compilable, group in
            itertools.groupby(stack, key=lambda layer: isinstance(layer, XLA_LAYERS))]


def _xla_stages(augmenter):
    """`augmenter` as a callable whose `xla_groups` of compilable layers each
    run as one XLA-compiled function; the others run op by op between them."""
    import tensorflow as tf

    def sequence(group):
        def apply(data, training):
            for layer in group:
                data = layer(data, training=training)
            return data
        return apply

    functions = [tf.function(sequence(group), jit_compile=True) if compilable
                 else sequence(group) for compilable, group in xla_groups(augmenter)]

    def run(data, training=True):
        for function in functions:
            data = function(data, training)
        return data

    return run


def _generator_dataset(arrays, batch_size, shuffle, seed, drop_remainder):
    """Batches gathered in numpy, for splits too large to hold as one tensor."""
    import tensorflow as tf

    epochs = iter(range(1 << 62))

    def batches():
        count = len(arrays[0])
        order = np.random.default_rng([seed, next(epochs)]).permutation(count) if shuffle \
            else np.arange(count)
        stop = count - count % batch_size if drop_remainder else count
        for start in range(0, stop, batch_size):
            index = np.sort(order[start:start + batch_size])
            batch = tuple(a[index] for a in arrays)
            yield batch if len(batch) > 1 else batch[0]

    specs = tuple(tf.TensorSpec((None,) + a.shape[1:], tf.as_dtype(a.dtype)) for a in arrays)
    return tf.data.Dataset.from_generator(batches, output_signature=specs if len(specs) > 1
                                          else specs[0])


@keras.saving.register_keras_serializable(package=layers.PACKAGE)
class AugmentedModel(keras.Model):
    """Runs an augmentation stack on the accelerator inside the training step.

    Takes uint8 pixel batches, or ``{"images": ..., "labels": ...}`` when the
    stack mixes labels (mixup / CutMix); in training the stack augments them,
    in inference (`training=False`) they pass unchanged. The loss then sees the
    mixed labels; the compiled metrics see the labels as given. A model with
    extra training outputs (GoogLeNet's auxiliary heads) computes the loss
    itself, so compile it as well; metrics see its main output. `self.model`
    is the model that takes the pixels (a `zoo.contract.Classifier`, which
    normalizes them), the one to save for inference.

    Args:
        model: the model (raw pixel values in).
        augmenter: a stack from `build_augmenter`.
    """

    def __init__(self, model, augmenter, **kwargs):
        super().__init__(**kwargs)
        self.model = model
        self.augmenter = augmenter
        self._mixed_labels = None

    def call(self, inputs, training=False):
        if isinstance(inputs, dict):
            images, labels = apply_augmenter(self.augmenter, inputs["images"],
                                             inputs.get("labels"), training=training)
            # Read back by compute_loss in the same (traced) training step.
            self._mixed_labels = labels if training else None
        else:
            images = self.augmenter(inputs, training=training)
        return self.model(images, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if training and self._mixed_labels is not None:
            y, self._mixed_labels = self._mixed_labels, None
        if isinstance(y_pred, (list, tuple)):
            # Extra training outputs (GoogLeNet's auxiliary heads, main output
            # first): the model weighs them in its own loss (compiled too).
            return self.model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                           training=training)
        return super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                    training=training)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, (list, tuple)):
            y_pred = y_pred[0]
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def get_config(self):
        return {**super().get_config(),
                "model": keras.saving.serialize_keras_object(self.model),
                "augmenter": keras.saving.serialize_keras_object(self.augmenter)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"))
        augmenter = keras.saving.deserialize_keras_object(config.pop("augmenter"))
        return cls(model, augmenter, **config)
