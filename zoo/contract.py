"""The input contract a trained model carries, and the model that keeps it.

What a model expects travels with the model, not in a side file (KerasHub's
`ImageConverter`, torchvision's `Weights.transforms` and `meta["categories"]`,
timm's `pretrained_cfg` do the same): a `Classifier` is a network plus its
`InputContract`, and takes raw images (uint8, or floats in 0-255):

    raw images -> FitToSize -> keras.layers.Rescaling -> network -> probabilities

- `FitToSize` brings any image to the network's input: the channels (grayscale
  repeated to RGB, RGB to luma), then the size by the contract's `fit` rule:
  ``pad`` (centred zero padding when the image fits, as LeCun et al. 1998 pad
  MNIST 28x28 to 32x32, else a resize), ``resize`` (bilinear, antialiased; the
  aspect ratio is not kept) or ``crop`` (the central region of `CROP_FRACTION`
  of the short side at the target's aspect, resized: the evaluation transform
  of the ImageNet papers, 224 out of 256, Krizhevsky et al. 2012). One
  implementation serves training, evaluation, ensembles and export.
- `keras.layers.Rescaling` with a per-channel scale and offset, `(x / 255 -
  mean) / std` (the training split's statistics, or the ImageNet weights' own).
- The contract records the images the model was trained on (size, channels),
  the fit rule, the normalization, the class names and where the data came
  from; it round-trips through `.keras` files (safe mode on) and export.

`contract_of(model)` finds the contract of any model the toolkit writes
(classifiers, ensembles, TTA and temperature wrappers).
"""

import dataclasses
import math

import keras
import numpy as np
from keras import ops

from zoo import resolve
from zoo.base import auxiliary_loss
from zoo.layers import PACKAGE

FIT_MODES = ("pad", "resize", "crop")
CROP_FRACTION = 0.875  # crop: 224 of 256 (torchvision's and timm's default eval crop)
# ITU-R BT.601 luma, PIL's "L" conversion: what an RGB image is to a grayscale model.
LUMA = (0.299, 0.587, 0.114)


@dataclasses.dataclass(frozen=True)
class InputContract:
    """What a model takes and what it answers.

    Attributes:
        image_shape: (height, width, channels) of the raw images the model was
            trained on; other sizes and channel counts are fitted (`fit`).
        mean, std: per network channel, of `x / 255` (a zero std counts as 1).
        fit: how an image of another size reaches the network: one of `FIT_MODES`.
        class_names: the name of each output class, or None.
        dataset: where the training images came from (a dataset name such as
            "mnist"), so tools can find test images from the model alone.
        classes: the labels of `dataset` kept (renumbered 0..k-1), or None.
    """

    image_shape: tuple
    mean: tuple
    std: tuple
    fit: str = "pad"
    class_names: tuple | None = None
    dataset: str | None = None
    classes: tuple | None = None

    def __post_init__(self):
        shape = tuple(self.image_shape)
        if len(shape) != 3 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1
                                  for d in shape) or shape[-1] not in (1, 3):
            raise resolve.bad_option("image_shape", self.image_shape,
                                     "(height, width, channels) with 1 or 3 channels")
        mean, std = (tuple(float(v) for v in np.ravel(x)) for x in (self.mean, self.std))
        if len(mean) != len(std) or len(mean) not in (1, 3) or min(std) < 0 or not all(
                math.isfinite(v) for v in mean + std):
            raise resolve.bad_option("mean/std", (list(mean), list(std)),
                                     "one mean and one std >= 0 per channel (1 or 3)")
        resolve.check_choice("fit", self.fit, FIT_MODES)
        names = None if self.class_names is None else tuple(str(c) for c in self.class_names)
        classes = None if self.classes is None else tuple(int(c) for c in self.classes)
        for key, value in (("image_shape", shape), ("mean", mean), ("std", std),
                           ("class_names", names), ("classes", classes)):
            object.__setattr__(self, key, value)

    @property
    def num_classes(self):
        return None if self.class_names is None else len(self.class_names)

    def to_config(self):
        """Plain JSON values (lists), as `get_config` and export.json hold them."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_config(cls, config):
        if isinstance(config, cls):
            return config
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - fields)
        if unknown:
            raise resolve.bad_option("contract", unknown[0], "one of " + ", ".join(sorted(fields)))
        return cls(**config)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def describe(self):
        """One line for notices and export.json."""
        how = {"pad": "zero-padded centrally when no larger than the network's input, "
                      "else resized (bilinear)",
               "resize": "resized (bilinear) to the network's input",
               "crop": f"centre crop of {CROP_FRACTION:g} of the short side, resized"}[self.fit]
        height, width, channels = self.image_shape
        return (f"{height}x{width}x{channels} uint8 images (others {how}); "
                "(x / 255 - mean) / std inside the model")


def centre_padding(height, width, target_height, target_width):
    """The zero padding that centres a height x width image in the target size:
    [(top, bottom), (left, right)], the extra pixel of an odd difference at the
    bottom/right. Works on ints and on tensors."""
    top, left = (target_height - height) // 2, (target_width - width) // 2
    return [(top, target_height - height - top), (left, target_width - width - left)]


def resize_matrix(size, target):
    """(target, size) float32 weights of `ops.image.resize` (bilinear, antialiased)
    along one axis, read off the resize of the unit vectors: the resize is
    linear and separable, so resizing an image is `rows @ image @ cols.T`."""
    unit = ops.reshape(ops.eye(size, dtype="float32"), (size, size, 1, 1))
    weights = ops.image.resize(unit, (target, 1), interpolation="bilinear", antialias=True)
    return ops.transpose(ops.reshape(weights, (size, target)))


@keras.saving.register_keras_serializable(package=PACKAGE)
class FitToSize(keras.layers.Layer):
    """Raw pixels (N, h, w, c) or (h, w, c) to float32 images of `height` x
    `width` x `channels`, by the rule `mode` (`FIT_MODES`, module docstring).

    The choice is static when the input's height and width are known (then
    the resize is two constant matrices, which every export format holds),
    else it is made per batch inside the graph.

    Args:
        height, width: the network's input size in pixels.
        channels: the network's channels (None: keep the input's).
        mode: "pad", "resize" or "crop".
        crop_fraction: the share of the short side "crop" keeps.
    """

    def __init__(self, height, width, channels=None, mode="pad", crop_fraction=CROP_FRACTION,
                 **kwargs):
        resolve.check_positive_int("height", height)
        resolve.check_positive_int("width", width)
        if channels is not None and channels not in (1, 3):
            raise resolve.bad_option("channels", channels, "1, 3 or None")
        resolve.check_choice("mode", mode, FIT_MODES)
        resolve.check_number("crop_fraction", crop_fraction, low=0.0, high=1.0, low_open=True)
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.height, self.width, self.channels = height, width, channels
        self.mode, self.crop_fraction = mode, float(crop_fraction)

    def call(self, images):
        images = ops.cast(ops.convert_to_tensor(images), "float32")
        single = len(images.shape) == 3
        if single:
            images = ops.expand_dims(images, 0)
        images = self._channels(images)
        images = self._fit(images)
        return ops.squeeze(images, 0) if single else images

    def _channels(self, images):
        have = images.shape[-1]
        if self.channels is None or have == self.channels:
            return images
        if have not in (1, 3, None):
            raise resolve.bad_option("images", f"{have} channels",
                                     f"1 or 3 channels (the network takes {self.channels})")
        if self.channels == 3:
            def convert():
                return ops.concatenate([images[..., :1]] * 3, axis=-1)
        else:
            luma = ops.convert_to_tensor(np.asarray(LUMA, np.float32).reshape(3, 1))

            def convert():
                return ops.matmul(images[..., :3], luma)
        if have is not None:
            return convert()
        # An unknown channel count (a retraced graph): chosen per batch.
        other = 1 if self.channels == 3 else 3
        out = ops.cond(ops.shape(images)[-1] == other, convert, lambda: images)
        shape = ops.shape(images)
        return ops.reshape(out, (shape[0], shape[1], shape[2], self.channels))

    def _fit(self, images):
        static_h, static_w = images.shape[1], images.shape[2]
        if static_h is not None and static_w is not None:
            if (static_h, static_w) == (self.height, self.width):
                return images
            if self.mode == "resize":
                return self._resize(images)
            if self.mode == "crop":
                return self._crop(images)
            fits = static_h <= self.height and static_w <= self.width
            return self._pad(images) if fits else self._resize(images)
        if self.mode == "resize":
            out = self._resize(images)
        elif self.mode == "crop":
            out = self._crop(images)
        else:
            shape = ops.shape(images)
            fits = ops.logical_and(shape[1] <= self.height, shape[2] <= self.width)
            out = ops.cond(fits, lambda: self._pad(images), lambda: self._resize(images))
        return ops.reshape(out, (-1, self.height, self.width, self.channels or images.shape[-1]))

    def _pad(self, images):
        shape = ops.shape(images)
        rows, cols = centre_padding(shape[1], shape[2], self.height, self.width)
        return ops.pad(images, [[0, 0], list(rows), list(cols), [0, 0]])

    def _resize(self, images):
        static_h, static_w = images.shape[1], images.shape[2]
        if static_h is None or static_w is None:
            return ops.image.resize(images, (self.height, self.width), interpolation="bilinear",
                                    antialias=True)
        rows = resize_matrix(static_h, self.height)
        cols = resize_matrix(static_w, self.width)
        return ops.einsum("ai,nijc,bj->nabc", rows, images, cols)

    def _crop(self, images):
        """The central window of `crop_fraction` of the short side with the
        target's aspect ratio, resized to the target: torchvision's
        Resize(size / fraction) + CenterCrop(size), cropping first."""
        shape = ops.shape(images)
        height, width = shape[1], shape[2]
        if images.shape[1] is not None and images.shape[2] is not None:
            height, width = images.shape[1], images.shape[2]
            scale = self.crop_fraction * min(height / self.height, width / self.width)
            crop_h = max(1, min(height, int(round(self.height * scale))))
            crop_w = max(1, min(width, int(round(self.width * scale))))
            top, left = (height - crop_h) // 2, (width - crop_w) // 2
            return self._resize(images[:, top:top + crop_h, left:left + crop_w, :])
        h = ops.cast(height, "float32")
        w = ops.cast(width, "float32")
        scale = self.crop_fraction * ops.minimum(h / self.height, w / self.width)
        crop_h = ops.cast(ops.clip(ops.round(self.height * scale), 1.0, h), "int32")
        crop_w = ops.cast(ops.clip(ops.round(self.width * scale), 1.0, w), "int32")
        top, left = (ops.cast(height, "int32") - crop_h) // 2, (ops.cast(width,
                                                                         "int32") - crop_w) // 2
        window = ops.slice(images, [0, top, left, 0],
                           [shape[0], crop_h, crop_w, images.shape[-1]])
        return self._resize(window)

    def compute_output_shape(self, input_shape):
        channels = self.channels or input_shape[-1]
        if len(input_shape) == 3:
            return (self.height, self.width, channels)
        return (input_shape[0], self.height, self.width, channels)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "channels": self.channels, "mode": self.mode,
                "crop_fraction": self.crop_fraction}


def normalization_layer(mean, std, name="normalize"):
    """`(x / 255 - mean) / std` on pixel values as Keras' `Rescaling` with a
    per-channel scale 1 / (255 std) and offset -mean / std (constants inside
    the graph, which every export format keeps); a zero std counts as 1."""
    mean = np.asarray(mean, np.float64)
    std = np.asarray(std, np.float64)
    std = np.where(std > 0, std, 1.0)
    return keras.layers.Rescaling(scale=(1.0 / (255.0 * std)).tolist(),
                                  offset=(-mean / std).tolist(), dtype="float32", name=name)


def preprocess(contract, input_shape, images, batch_size=4096):
    """uint8 images as a network of `input_shape` sees them under `contract`
    (fitted, normalized), as a float32 numpy array: for code outside Keras
    that feeds the same network (a plain PyTorch loop in the benchmarks)."""
    height, width, channels = input_shape
    fit = FitToSize(height, width, channels, contract.fit)
    normalize = normalization_layer(contract.mean, contract.std)
    parts = [ops.convert_to_numpy(normalize(fit(images[start:start + batch_size])))
             for start in range(0, len(images), batch_size)]
    return np.concatenate(parts).astype(np.float32)


def network_input_shape(network):
    """The shape of one input of a bare network (its first member's for an
    ensemble or wrapper): (height, width, channels) for an image network."""
    try:
        return tuple(network.input_shape[1:])
    except (AttributeError, ValueError):
        inner = (getattr(network, "members", None) or [getattr(network, "model", None)])[0]
        if inner is None:
            raise resolve.bad_option("network", getattr(network, "name", network),
                                     "a model with a fixed input shape") from None
        return network_input_shape(inner)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Classifier(keras.Model):
    """A network and its `InputContract`: raw images in, probabilities out.

    In training the network's own extra outputs (GoogLeNet's auxiliary heads)
    pass through, and their loss is weighted as the network says
    (`aux_weight`); inference sees the main output.

    Args:
        network: a Keras model on normalized images of its own input size.
        contract: an `InputContract` (or its config dict).
    """

    def __init__(self, network, contract, **kwargs):
        contract = InputContract.from_config(contract)
        kwargs.setdefault("name", network.name)
        super().__init__(**kwargs)
        shape = network_input_shape(network)
        if len(shape) != 3 or None in shape:
            raise resolve.bad_option("network", f"{network.name} taking {shape}",
                                     "a network with a fixed (height, width, channels) input")
        height, width, channels = shape
        if len(contract.mean) != channels:
            raise resolve.bad_option("contract", f"mean/std of {len(contract.mean)} channels",
                                     f"{channels} values each (the network's channels)")
        self.network = network
        self.contract = contract
        self.fit_to_size = FitToSize(height, width, channels, contract.fit, name="fit_to_size")
        self.normalize = normalization_layer(contract.mean, contract.std)
        # Every part is built (the network; the fit and the normalization have
        # no weights), so weights load before a first call (a resumed run).
        self.built = True

    def preprocess(self, images):
        """Raw images -> the network's normalized input."""
        return self.normalize(self.fit_to_size(images))

    def call(self, images, training=False):
        return self.network(self.preprocess(images), training=training)

    def compute_output_shape(self, input_shape):
        return self.network.compute_output_shape(
            (input_shape[0], *network_input_shape(self.network)))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, (list, tuple)):
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        main, *aux = y_pred  # the network's auxiliary heads, in training only
        loss = super().compute_loss(x, y, main, sample_weight, training)
        weight = getattr(self.network, "aux_weight", 1.0)
        for aux_pred in aux:
            loss = loss + weight * auxiliary_loss(self.loss, y, aux_pred, sample_weight)
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, (list, tuple)):
            y_pred = y_pred[0]
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable,
                "network": keras.saving.serialize_keras_object(self.network),
                "contract": self.contract.to_config()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        network = keras.saving.deserialize_keras_object(config.pop("network"))
        return cls(network, config.pop("contract"), **config)


def contract_of(model):
    """The `InputContract` a model carries (a `Classifier`, or a wrapper around
    one: ensembles answer with their first member's, which `EnsembleModel`
    checks against the others), or None for a bare network."""
    found = getattr(model, "contract", None)
    if isinstance(found, InputContract):
        return found
    inner = []
    for attribute in ("members", "model", "student", "network"):
        value = getattr(model, attribute, None)
        inner += list(value) if isinstance(value, (list, tuple)) else [value]
    inner += list(getattr(model, "layers", None) or [])
    for candidate in inner:
        if isinstance(candidate, keras.Model) and candidate is not model:
            found = contract_of(candidate)
            if found is not None:
                return found
    return None


def model_input_shape(model, option="input_shape"):
    """(height, width, channels) of the images a model takes: its contract's
    for the models the toolkit writes, else the (first) network's own input.
    `option` names the argument in the error for a model without one."""
    contract = contract_of(model)
    if contract is not None:
        return contract.image_shape
    try:
        return network_input_shape(model)
    except ValueError:
        raise resolve.bad_option(option, getattr(model, "name", model),
                                 "a model with a fixed input shape") from None
