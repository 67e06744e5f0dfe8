"""Export a zoo model that serves raw uint8 images: SavedModel, ONNX or LiteRT.

The exported graph is the whole inference path, so a server (TF Serving,
ONNX Runtime, the LiteRT interpreter, or `scripts/predict.py` with one of
them) needs nothing of this project:

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

`FORMATS` (`export_model(serving, DIR, format)`; the TensorFlow backend):
- ``savedmodel``: one signature, ``serve``: input ``images``, uint8, shape
  (None, H, W, C) (H and W are None unless fixed with `raw_shape`), output
  ``probabilities``, float32 (N, num_classes); `keras.export.ExportArchive`.
- ``onnx``: ``model.onnx`` with the same input and output names, any batch size
  and a fixed H, W (`model.export(format="onnx")`, tf2onnx).
- ``litert``: ``model.tflite`` (signature ``serving_default``), any batch size
  and a fixed H, W (`model.export(format="litert")`), optionally int8
  (post-training quantization calibrated on the run's training images).
Each folder has `METADATA_FILE` (export.json): format, accepted input, why its
size is fixed, normalization, TTA, class names, quantization cost.
"""

import dataclasses
import importlib.util
import os
import shutil
from pathlib import Path

import keras
import numpy as np
from keras import ops

import zoo  # noqa: F401  (registers the models and layers for load_model)
from augment import datasets, pipelines
from augment import layers as augment_layers
from augment import tta as augment_tta
from ensembles import EnsembleModel
from ensembles.combine import model_input_shape
from zoo import resolve
from zoo.training import rundir
from zoo.training.rundir import write_json

SIGNATURE = "serve"
INPUT_KEY = "images"
OUTPUT_KEY = "probabilities"
METADATA_FILE = "export.json"  # beside saved_model.pb: what the signature accepts, class names
FIT_MODES = ("pad", "resize")
# Native image sizes (height, width) of the datasets, the default of a fixed-size format.
DATASET_SIZES = {"mnist": (28, 28), "mnist_sample": (28, 28), "fashion_mnist": (28, 28),
                 "cifar10": (32, 32), "cifar100": (32, 32)}
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
        static_h, static_w = images.shape[1], images.shape[2]
        if static_h is None or static_w is None:
            return ops.image.resize(images, (self.height, self.width), interpolation="bilinear",
                                    antialias=True)
        # A known size: the same resize as two constant matrices (rows, then
        # columns), which every export format holds (ONNX and LiteRT lack the
        # antialiased kernel's op).
        rows = resize_matrix(static_h, self.height)
        cols = resize_matrix(static_w, self.width)
        return ops.einsum("ai,nijc,bj->nabc", rows, images, cols)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "mode": self.mode}


def resize_matrix(size, target):
    """(target, size) float32 weights of `ops.image.resize` (bilinear, antialiased)
    along one axis, read off the resize of the unit vectors: the resize is
    linear and separable, so resizing an image is `rows @ image @ cols.T`."""
    unit = ops.reshape(ops.eye(size, dtype="float32"), (size, size, 1, 1))
    weights = ops.image.resize(unit, (target, 1), interpolation="bilinear", antialias=True)
    return ops.transpose(ops.reshape(weights, (size, target)))


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
        "model", "fit" ("resize" for a run from ImageNet weights, else "pad"),
        "data_dir", "classes", "seed" (where its images come from).
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
        "data_dir": config.get("data_dir"), "classes": config.get("classes"),
        "seed": config.get("seed", 0),
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
    # training=False is part of the graph: every exporter traces inference.
    return keras.Model(inputs, net(x, training=False), name=f"serving_{model.name}")


def _write_saved_model(serving, directory, raw_shape, **_):
    """``serve`` signature with an in-graph input check (keras.export.ExportArchive)."""
    import tensorflow as tf

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
    archive.write_out(str(directory), verbose=False)
    return {"signature": SIGNATURE, "input": INPUT_KEY, "output": OUTPUT_KEY}


def _named_outputs(serving):
    """`serving` with its output named `OUTPUT_KEY` (LiteRT names a signature's
    outputs after the keys of a dict)."""
    return keras.Model(serving.inputs, {OUTPUT_KEY: serving.outputs[0]}, name=serving.name)


def _write_onnx(serving, directory, raw_shape, **_):
    """model.onnx through Keras' exporter (tf2onnx under the TensorFlow backend),
    the output renamed `OUTPUT_KEY`; the runtime checks rank, sizes and dtype."""
    import onnx

    path = directory / FORMATS["onnx"].file
    spec = keras.InputSpec(shape=(None, *raw_shape), dtype="uint8", name=INPUT_KEY)
    serving.export(str(path), format="onnx", input_signature=[spec], verbose=False)
    proto = onnx.load(str(path))
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = [OUTPUT_KEY if name == old else name for name in node.output]
    proto.graph.output[0].name = OUTPUT_KEY
    onnx.save(proto, str(path))
    return {"signature": None, "input": proto.graph.input[0].name, "output": OUTPUT_KEY}


def _write_litert(serving, directory, raw_shape, quantize=None, representative=None):
    """model.tflite through Keras' exporter (TFLiteConverter from a SavedModel),
    built-in ops only; `quantize="int8"`: post-training integer quantization of
    weights and activations calibrated on `representative` (uint8 images, float
    fallback for ops without an int8 kernel)."""
    import tensorflow as tf

    options = {}
    if quantize == "int8":
        options = {"optimizations": [tf.lite.Optimize.DEFAULT],
                   "representative_dataset": lambda: ([image[None]] for image in representative)}
    spec = keras.InputSpec(shape=(None, *raw_shape), dtype="uint8", name=INPUT_KEY)
    _named_outputs(serving).export(str(directory / FORMATS["litert"].file), format="litert",
                                   input_signature=[spec], verbose=False, **options)
    return {"signature": "serving_default", "input": INPUT_KEY, "output": OUTPUT_KEY}


@dataclasses.dataclass(frozen=True)
class Format:
    """An export format.

    Attributes:
        file: what the export folder holds for the runtime.
        runtime: the `scripts/predict.py --runtime` that serves it.
        dynamic_size: whether its input takes any height and width (else a
            fixed `raw_shape`, `--raw-size`).
        quantize: the post-training quantization modes it offers.
        write: writes the format into a folder; returns the io names.
        packages: the Python packages the writer needs beside TensorFlow.
    """

    file: str
    runtime: str
    dynamic_size: bool
    quantize: tuple
    write: object
    packages: tuple = ()


# ONNX (tf2onnx) and LiteRT (built-in ops) hold neither the per-batch
# pad-or-resize choice nor the antialiased resize of a dynamic size; a fixed
# size pads or resizes with plain ops (`FitToSize`), which both hold.
FIXED_SIZE_REASON = ("{format} cannot hold a dynamic-size input (the per-batch pad-or-resize "
                     "choice and the antialiased resize kernel); images must be {size}")
FORMATS = {
    "savedmodel": Format("saved_model.pb", "tf", True, (), _write_saved_model),
    "onnx": Format("model.onnx", "onnx", False, (), _write_onnx, ("onnx", "tf2onnx")),
    "litert": Format("model.tflite", "litert", False, ("int8",), _write_litert),
}


def check_format(format, quantize=None):
    """`format` (FORMATS) and `quantize` (None or one of the format's modes)."""
    resolve.check_choice("format", format, tuple(FORMATS))
    modes = FORMATS[format].quantize
    if quantize is not None and quantize not in modes:
        raise resolve.bad_option("quantize", quantize, (
            f"one of {', '.join(modes)} for --format {format}" if modes else
            f"none for --format {format} (int8 is offered for litert)"))
    missing = [p for p in FORMATS[format].packages if importlib.util.find_spec(p) is None]
    if missing:
        raise resolve.bad_option("format", format, (
            f"a format whose packages are installed ({', '.join(missing)} missing: "
            "pip install -e '.[export]')"))
    return format


def export_model(serving, directory, format="savedmodel", metadata=None, overwrite=False,
                 quantize=None, representative=None):
    """Writes `serving` (from `serving_model`) to `directory` in `format` with
    `METADATA_FILE`; returns the metadata.

    Args:
        serving: a keras model taking uint8 images; a format without
            `dynamic_size` needs it built with a fixed `raw_shape`.
        directory: output folder; written atomically (a sibling temp folder).
        format: one of `FORMATS`.
        metadata: extra JSON-able entries for `METADATA_FILE` (class names, source).
        overwrite: replace an existing non-empty `directory`.
        quantize: a post-training quantization mode of the format (`Format.quantize`).
        representative: uint8 images (N, H, W, C) of the training split that
            calibrate `quantize`.
    """
    check_format(format, quantize)
    spec = FORMATS[format]
    raw_shape = tuple(serving.input_shape[1:])
    if not spec.dynamic_size and None in raw_shape:
        raise resolve.bad_option("raw_shape", raw_shape, "a fixed (height, width, channels): " +
                                 FIXED_SIZE_REASON.format(format=format, size="one size"))
    if quantize and (representative is None or len(representative) == 0):
        raise resolve.bad_option("representative", representative,
                                 f"uint8 training images to calibrate {quantize} quantization")
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise resolve.bad_option("out", str(directory),
                                 "a new or empty folder (or overwrite=True / --overwrite)")
    tmp = directory.with_name(f".tmp_{directory.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        names = spec.write(serving, tmp, raw_shape, quantize=quantize,
                           representative=representative)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    output_shape = serving.output_shape
    accepted = accepted_input(raw_shape)
    info = {
        "format": format, "file": spec.file, "runtime": spec.runtime,
        "signature": names["signature"],
        "input": {"name": names["input"], "dtype": "uint8", "shape": [None, *raw_shape],
                  "accepted": accepted},
        "output": {"name": names["output"], "dtype": "float32", "shape": list(output_shape)},
        "num_classes": int(output_shape[-1]),
        "fixed_size": fixed_size_note(format, raw_shape),
        "quantize": quantize,
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


def fixed_size_note(format, raw_shape):
    """Why the input has a fixed size, for `METADATA_FILE` (None: any size)."""
    if raw_shape[0] is None:
        return None
    size = f"{raw_shape[0]}x{raw_shape[1]}"
    if FORMATS[format].dynamic_size:
        return f"{size}, chosen with raw_shape (--raw-size)"
    return FIXED_SIZE_REASON.format(format=format, size=size)


def default_raw_size(settings, input_shape):
    """(height, width) a fixed-size format takes when none is given: the native
    size of the run's dataset (MNIST 28x28, padded to LeNet-5's 32x32 in the
    graph), else the model's input."""
    return DATASET_SIZES.get((settings or {}).get("dataset"), tuple(input_shape[:2]))


def dataset_images(settings, limit_train, data_dir=None, channels=None):
    """(training images, test images, test labels, where they came from) of a
    run's dataset (`read_settings`), uint8, loaded once: up to `limit_train`
    training images and the whole test split, seeded as the run's subsets are.
    `data_dir` overrides the run's; `channels=3` repeats grayscale to RGB (a
    model with ImageNet weights trained on MNIST)."""
    if not settings or not settings.get("dataset"):
        raise resolve.bad_option("dataset", None, "a training run's config.json naming its "
                                 "dataset beside the model (needed for calibration data)")
    ds = datasets.load_dataset(settings["dataset"], data_dir or settings.get("data_dir"),
                               seed=settings.get("seed", 0), classes=settings.get("classes"),
                               limit_train=limit_train)
    x_train, x_test = ds.x_train, ds.x_test
    if channels == 3 and x_train.shape[-1] == 1:
        x_train, x_test = (np.repeat(x, 3, axis=-1) for x in (x_train, x_test))
    return x_train, x_test, ds.y_test, ds.source


def quantization_report(reference, quantized, labels):
    """What quantization cost on labelled images: accuracies of the float and
    quantized exports' probabilities, their change, the top-1 agreement and the
    largest probability difference."""
    reference, quantized = np.asarray(reference), np.asarray(quantized)
    labels = np.asarray(labels)
    accuracy = [float(np.mean(np.argmax(p, -1) == labels)) for p in (reference, quantized)]
    return {"images": int(len(labels)), "accuracy_float": accuracy[0],
            "accuracy_quantized": accuracy[1], "accuracy_change": accuracy[1] - accuracy[0],
            "top1_agreement": float(np.mean(np.argmax(reference, -1) == np.argmax(quantized, -1))),
            "max_abs_diff": float(np.max(np.abs(reference - quantized)))}


def accepted_input(raw_shape):
    """What the ``serve`` signature accepts, in words (its error messages say it)."""
    height, width, channels = raw_shape
    sides = ("H, W" if height is None and width is None else
             f"{'H' if height is None else height}, {'W' if width is None else width}")
    return f"a uint8 batch shaped (N, {sides}, {channels})"
