"""Export a model that serves raw uint8 images: SavedModel, ONNX or LiteRT.

The exported graph is the whole inference path, so a server (TF Serving,
ONNX Runtime, the LiteRT interpreter, or `scripts/predict.py` with one of
them) needs nothing of this project:

    uint8 (N, H, W, C) -> [TTA] -> model (fits, normalizes, predicts) [ensemble] -> probabilities

The model carries its input contract (`zoo.contract.Classifier`): the size it
was trained at, how other sizes are fitted (centred zero padding, a resize or
a centre crop), its normalization and class names; export.json takes them from
it. `augment.tta.TTAModel` and ensembles are keras models themselves, so they
export as one graph.

`FORMATS` (`export_model(serving, DIR, format)`; the TensorFlow backend):
- ``savedmodel``: one signature, ``serve``: input ``images``, uint8, shape
  (None, H, W, C) (H and W are None unless fixed with `raw_shape`), output
  ``probabilities``, float32 (N, num_classes); `keras.export.ExportArchive`.
- ``onnx``: ``model.onnx`` with the same input and output names, any batch size
  and a fixed H, W (`model.export(format="onnx")`, tf2onnx).
- ``litert``: ``model.tflite`` (signature ``serving_default``), any batch size
  and a fixed H, W (`model.export(format="litert")`), optionally int8
  (post-training quantization calibrated on training images).
Each folder has `METADATA_FILE` (export.json): format, accepted input, why its
size is fixed, the input contract, TTA, class names, quantization cost.
"""

import dataclasses
import importlib.util
import os
import shutil
from pathlib import Path

import keras
import numpy as np

from augment import datasets
from augment import tta as augment_tta
from ensembles import EnsembleModel
from zoo import resolve
from zoo.contract import contract_of
from zoo.training.rundir import write_json

SIGNATURE = "serve"
INPUT_KEY = "images"
OUTPUT_KEY = "probabilities"
METADATA_FILE = "export.json"  # beside saved_model.pb: what the signature accepts, class names


def average_models(models, name="ensemble"):
    """Soft voting over `models` as one keras model (`ensembles.EnsembleModel`)."""
    return EnsembleModel(list(models), method="soft", name=name)


def serving_model(model, raw_shape=None, tta=None, tta_padding=None):
    """The keras model a SavedModel serves: raw uint8 images in, probabilities out.

    Args:
        model: a model that carries its input contract (`zoo.contract.Classifier`,
            an ensemble of them, ...): it fits and normalizes the images itself.
        raw_shape: (height, width, channels) of the raw images; default
            (None, None, channels), any size (the model fits it).
        tta: test-time views, one of `augment.tta.VIEWS`, or None.
        tta_padding: TTA crop shift in pixels (default `augment.tta.evaluation_settings`).
    """
    contract = contract_of(model)
    if contract is None:
        raise resolve.bad_option("model", getattr(model, "name", model), (
            "a model that carries its input contract (zoo.contract.Classifier, as every "
            "model the toolkit trains; wrap a bare network with its mean and std)"))
    channels = contract.image_shape[-1]
    raw_shape = tuple(raw_shape) if raw_shape is not None else (None, None, channels)
    if len(raw_shape) != 3 or raw_shape[-1] != channels or any(
            d is not None and d < 1 for d in raw_shape[:2]):
        raise resolve.bad_option("raw_shape", raw_shape,
                                 f"(height, width, {channels}) with positive or None sides")
    net = model
    if tta:
        settings = augment_tta.evaluation_settings()
        if tta_padding is not None:
            settings["padding"] = tta_padding
        net = augment_tta.TTAModel(model, tta, **settings, name=f"tta_{tta}")
    inputs = keras.Input(raw_shape, dtype="uint8", name=INPUT_KEY)
    # training=False is part of the graph: every exporter traces inference.
    return keras.Model(inputs, net(inputs, training=False), name=f"serving_{model.name}")


def ensemble_members(model):
    """The members of the ensemble inside a serving model (through TTA and
    temperature wrappers), or [] when there is none."""
    if isinstance(model, EnsembleModel):
        return list(model.members)
    inner = [getattr(model, "model", None), *(getattr(model, "layers", None) or [])]
    for candidate in inner:
        if isinstance(candidate, keras.Model) and candidate is not model:
            found = ensemble_members(candidate)
            if found:
                return found
    return []


def contract_metadata(model):
    """export.json's description of what the model takes: the contract, and
    each member's normalization and fit rule for an ensemble."""
    contract = contract_of(model)
    members = [m for m in ensemble_members(model) if contract_of(m)]
    return {"contract": contract.to_config(),
            "class_names": list(contract.class_names or []) or None,
            "preprocessing": contract.describe(),
            **({"members": [{"name": m.name, **contract_of(m).to_config()} for m in members]}
               if members else {})}


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
# size pads or resizes with plain ops (`zoo.contract.FitToSize`), which both hold.
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
        **contract_metadata(serving),
        **(metadata or {}),
    }
    write_json(tmp / METADATA_FILE, info)
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return info


def fixed_size_note(format, raw_shape):
    """Why the input has a fixed size, for `METADATA_FILE` (None: any size)."""
    if raw_shape[0] is None:
        return None
    size = f"{raw_shape[0]}x{raw_shape[1]}"
    if FORMATS[format].dynamic_size:
        return f"{size}, chosen with raw_shape (--raw-size)"
    return FIXED_SIZE_REASON.format(format=format, size=size)


def default_raw_size(model):
    """(height, width) a fixed-size format takes when none is given: the size
    the model was trained at (MNIST 28x28, padded to LeNet-5's 32x32 inside)."""
    return tuple(contract_of(model).image_shape[:2])


def dataset_images(model, limit_train, data_dir=None):
    """(training images, test images, test labels, where they came from) of
    the dataset the model was trained on (its contract's `dataset` and
    `classes`), uint8, loaded once: up to `limit_train` training images and the
    whole test split. `data_dir` as for `augment.datasets.load_dataset`
    (default $ZOO_DATA_DIR, else keras.datasets)."""
    contract = contract_of(model)
    if contract is None or not contract.dataset or contract.dataset not in datasets.list_datasets():
        raise resolve.bad_option("dataset", getattr(contract, "dataset", None), (
            "a model whose contract names the dataset it was trained on (one of "
            + ", ".join(datasets.list_datasets()) + ")"))
    ds = datasets.load_dataset(contract.dataset, data_dir, classes=contract.classes,
                               limit_train=limit_train)
    return ds.x_train, ds.x_test, ds.y_test, ds.source


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
