"""Export a zoo model as a TensorFlow SavedModel that serves raw uint8 images.

The exported graph is the whole inference path, so a server (TF Serving, or
`scripts/predict.py` with TensorFlow alone) needs nothing of this project:

    uint8 (N, H, W, C) -> FitToSize -> Standardize -> model [TTA, ensemble] -> probabilities

- `FitToSize`: images no larger than the model's input are zero-padded
  centrally, as training pads MNIST 28x28 to 32x32 (`augment.datasets.pad_to`,
  LeCun et al. 1998); any other size is resized (bilinear, antialiased, the
  aspect ratio is not kept). A model from ImageNet weights resizes every size,
  as its training did (`mode="resize"`).
- `augment.layers.Standardize`: `(x / 255 - mean) / std` with the training
  split's statistics (`config.json` of the run), or the ImageNet weights'
  (`ZooModel.pretrained`; keras.applications' caffe-style BGR mean subtraction
  is this function too: the converted conv1 reads RGB, `zoo.pretrained.catalog`).
- `augment.tta.TTAModel` and ensembles are keras models themselves, so they
  export as one graph.

The SavedModel has one signature, ``serve``: input ``images``, uint8, shape
(None, H, W, C) (H and W are None unless fixed with `raw_shape`), output
``probabilities``, float32 (N, num_classes). Export uses the TensorFlow
backend (`keras.export.ExportArchive`).
"""

import os
import shutil
from pathlib import Path

import keras
from keras import ops

import zoo  # noqa: F401  (registers the models and layers for load_model)
from augment import datasets, pipelines
from augment import layers as augment_layers
from augment import tta as augment_tta
from ensembles import EnsembleModel
from zoo import resolve
from zoo.training import rundir
from zoo.training.rundir import write_json

SIGNATURE = "serve"
INPUT_KEY = "images"
OUTPUT_KEY = "probabilities"
METADATA_FILE = "export.json"  # beside saved_model.pb: what the signature accepts, class names
FIT_MODES = ("pad", "resize")
CLASS_NAMES = {
    "mnist": datasets.MNIST_CLASSES, "mnist_sample": datasets.MNIST_CLASSES,
    "fashion_mnist": datasets.FASHION_MNIST_CLASSES, "cifar10": datasets.CIFAR10_CLASSES,
}


@keras.saving.register_keras_serializable(package="zoo")
class FitToSize(keras.layers.Layer):
    """Raw pixels to `height` x `width`, as float32: central zero padding when
    the image fits (`augment.datasets.pad_to`), else a bilinear resize; with
    `mode="resize"` a resize whatever the size (ImageNet weights' training).

    The choice is static when the input's height and width are known, else it
    is made per batch inside the graph.

    Args:
        height, width: the model's input size in pixels.
        mode: "pad" (small images padded) or "resize".
    """

    def __init__(self, height, width, mode="pad", **kwargs):
        resolve.check_positive_int("height", height)
        resolve.check_positive_int("width", width)
        resolve.check_choice("mode", mode, FIT_MODES)
        super().__init__(**kwargs)
        self.height, self.width, self.mode = height, width, mode

    def call(self, images):
        images = ops.cast(images, "float32")
        static_h, static_w = images.shape[1], images.shape[2]
        if static_h is not None and static_w is not None:
            if (static_h, static_w) == (self.height, self.width):
                return images
            if self.mode == "resize":
                return self._resize(images)
            fits = static_h <= self.height and static_w <= self.width
            return self._pad(images) if fits else self._resize(images)
        if self.mode == "resize":
            return self._resize(images)
        shape = ops.shape(images)
        fits = ops.logical_and(shape[1] <= self.height, shape[2] <= self.width)
        out = ops.cond(fits, lambda: self._pad(images), lambda: self._resize(images))
        return ops.reshape(out, (-1, self.height, self.width, images.shape[-1]))

    def _pad(self, images):
        shape = ops.shape(images)
        rows, cols = datasets.centre_padding(shape[1], shape[2], self.height, self.width)
        return ops.pad(images, [[0, 0], list(rows), list(cols), [0, 0]])

    def _resize(self, images):
        return ops.image.resize(images, (self.height, self.width), interpolation="bilinear",
                                antialias=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "mode": self.mode}


def load_model(path):
    """A `.keras` zoo model, TTA wrapper or ensemble (registers the project's
    classes). An `augment.AugmentedModel` (`checkpoints/best.keras` of an
    on-device augmentation run, uint8 in) gives its zoo model (normalized in)."""
    path = Path(path)
    if not path.is_file():
        raise resolve.bad_option("model", str(path), "an existing .keras file")
    model = keras.saving.load_model(path)
    return model.model if isinstance(model, pipelines.AugmentedModel) else model


def read_settings(model_path):
    """Export settings from the `config.json` a training run wrote beside
    `model_path`, or None when there is none.

    Returns:
        dict with "mean", "std" (lists), "input_shape", "image_size",
        "crop_padding" (the training crop in pixels, 0 for none), "dataset",
        "model", "fit" ("resize" for a run from ImageNet weights, else "pad").
    """
    run = rundir.RunDir(Path(model_path).parent)
    path = run.config_path
    config = run.read_config()
    if config is None:
        return None
    if "normalization" not in config:
        raise ValueError(f"{path} has no 'normalization' entry: "
                         "is it a training run's config.json?")
    spec = pipelines.resolve_spec(config.get("augment", "none"),
                                  config.get("augment_options") or {})
    return {
        "mean": [float(v) for v in config["normalization"]["mean"]],
        "std": [float(v) for v in config["normalization"]["std"]],
        "input_shape": config.get("input_shape"), "image_size": config.get("image_size"),
        "crop_padding": spec.crop_padding, "dataset": config.get("dataset"),
        "model": config.get("model"), "fit": "resize" if config.get("weights") else "pad",
    }


def pretrained_settings(model):
    """Export settings from what a zoo model built from ImageNet weights
    records (`ZooModel.pretrained`), or None for any other model: "mean",
    "std", "fit" ("resize"), "class_names" (None when the head is new)."""
    recorded = getattr(model, "pretrained", None)
    if not isinstance(recorded, dict):
        return None
    return {"mean": [float(v) for v in recorded["mean"]],
            "std": [float(v) for v in recorded["std"]], "fit": "resize",
            "class_names": recorded.get("class_names")}


def average_models(models, name="ensemble"):
    """Soft voting over `models` as one keras model (`ensembles.EnsembleModel`)."""
    return EnsembleModel(list(models), method="soft", name=name)


def model_input_shape(model):
    """(height, width, channels) a model takes; subclassed wrappers (an
    `ensembles.EnsembleModel`, `augment.tta.TTAModel`) answer for their members."""
    try:
        return tuple(model.input_shape[1:])
    except (AttributeError, ValueError):
        inner = getattr(model, "members", None) or [getattr(model, "model", None)]
        if inner[0] is None:
            raise resolve.bad_option("input_shape", None, "the model's (height, width, channels): "
                                     "pass input_shape for this model") from None
        return model_input_shape(inner[0])


def serving_model(model, mean, std, input_shape=None, raw_shape=None, tta=None, crop_padding=0,
                  tta_padding=None, fit="pad"):
    """The keras model a SavedModel serves: raw uint8 images in, probabilities out.

    Args:
        model: a zoo model, ensemble or any keras model on normalized input.
        mean, std: per-channel statistics of the training split (of `x / 255`).
        input_shape: the model's (height, width, channels); default its own.
        raw_shape: (height, width, channels) of the raw images; default
            (None, None, channels), any size (`FitToSize` pads or resizes).
        tta: test-time views, one of `augment.tta.VIEWS`, or None.
        crop_padding: the training crop padding in pixels (sets the TTA shift,
            `augment.tta.evaluation_settings`).
        tta_padding: TTA crop shift in pixels, overriding `crop_padding`.
        fit: "pad" (images no larger than the input zero-padded, others
            resized) or "resize" (every image, as ImageNet weights expect).
    """
    input_shape = tuple(input_shape or model_input_shape(model))
    if len(input_shape) != 3 or None in input_shape:
        raise resolve.bad_option("input_shape", input_shape, "a fixed (height, width, channels)")
    height, width, channels = (int(d) for d in input_shape)
    if len(mean) != channels or len(std) != channels:
        raise resolve.bad_option("mean/std", (list(mean), list(std)),
                                 f"{channels} values each (the model's channels)")
    raw_shape = tuple(raw_shape) if raw_shape is not None else (None, None, channels)
    if len(raw_shape) != 3 or raw_shape[-1] != channels or any(
            d is not None and d < 1 for d in raw_shape[:2]):
        raise resolve.bad_option("raw_shape", raw_shape,
                                 f"(height, width, {channels}) with positive or None sides")
    net = model
    if tta:
        settings = augment_tta.evaluation_settings(mean, std, crop_padding)
        if tta_padding is not None:
            settings["padding"] = tta_padding
        net = augment_tta.TTAModel(model, tta, **settings, name=f"tta_{tta}")
    inputs = keras.Input(raw_shape, dtype="uint8", name=INPUT_KEY)
    x = FitToSize(height, width, mode=fit, name="fit_to_size")(inputs)
    x = augment_layers.Standardize(mean, std, name="standardize")(x)
    return keras.Model(inputs, net(x), name=f"serving_{model.name}")


def export_saved_model(serving, directory, metadata=None, overwrite=False):
    """Writes `serving` (from `serving_model`) as a SavedModel to `directory`
    with the ``serve`` signature and `METADATA_FILE`; returns the metadata.

    Args:
        serving: a keras model taking uint8 images.
        directory: output folder; written atomically (a sibling temp folder).
        metadata: extra JSON-able entries for `METADATA_FILE` (class names, source).
        overwrite: replace an existing non-empty `directory`.
    """
    import tensorflow as tf

    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise resolve.bad_option("out", str(directory),
                                 "a new or empty folder (or overwrite=True / --overwrite)")
    raw_shape = tuple(serving.input_shape[1:])
    accepted = accepted_input(raw_shape)
    # Unknown rank in the signature: with (None, H, W, C) TensorFlow folds the
    # rank check away and a signature call feeds any shape through unchecked.
    spec = tf.TensorSpec(None, tf.uint8, name=INPUT_KEY)

    def serve(images):
        shape = tf.shape(images, out_type=tf.int64)
        padded = tf.concat([tf.zeros([4], tf.int64), shape], axis=0)[-4:]  # rank < 4: zeros
        ok = tf.equal(tf.size(shape), 4)
        for axis, size in zip((1, 2, 3), raw_shape):
            fits = padded[axis] >= 1 if size is None else tf.equal(padded[axis], size)
            ok = tf.logical_and(ok, fits)
        check = tf.debugging.Assert(ok, [f"{INPUT_KEY}: expected {accepted}; received shape",
                                         shape], summarize=16, name="check_images")
        with tf.control_dependencies([check]):
            images = tf.ensure_shape(tf.identity(images), (None,) + raw_shape)
        return {OUTPUT_KEY: serving(images, training=False)}

    # No `archive.track(serving)`: the endpoint's variables are saved all the
    # same, and tracking makes the save walk trace every nested keras Model's
    # default signature (3x slower for GoogLeNet).
    archive = keras.export.ExportArchive()
    archive.add_endpoint(SIGNATURE, serve, input_signature=[spec])
    tmp = directory.with_name(f".tmp_{directory.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    archive.write_out(str(tmp), verbose=False)
    output_shape = serving.output_shape
    info = {
        "signature": SIGNATURE,
        "input": {"name": INPUT_KEY, "dtype": "uint8", "shape": [None, *raw_shape],
                  "accepted": accepted},
        "output": {"name": OUTPUT_KEY, "dtype": "float32", "shape": list(output_shape)},
        "num_classes": int(output_shape[-1]),
        "preprocessing": _preprocessing_text(serving),
        **(metadata or {}),
    }
    write_json(tmp / METADATA_FILE, info)
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return info


def _preprocessing_text(serving):
    fit = next((layer.mode for layer in serving.layers if isinstance(layer, FitToSize)), "pad")
    how = ("resize (bilinear) to the model input" if fit == "resize" else
           "zero-pad centrally when no larger than the model input, else resize (bilinear)")
    return f"{how}; then (x / 255 - mean) / std"


def accepted_input(raw_shape):
    """What the ``serve`` signature accepts, in words (its error messages say it)."""
    height, width, channels = raw_shape
    sides = ("H, W" if height is None and width is None else
             f"{'H' if height is None else height}, {'W' if width is None else width}")
    return f"a uint8 batch shaped (N, {sides}, {channels})"
