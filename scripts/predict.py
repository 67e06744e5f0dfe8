"""Top-k classes from a model written by scripts/export.py, with its runtime and numpy only.

    python scripts/predict.py exported/lenet5 digits.npy --top-k 3
    python scripts/predict.py exported/resnet20 cat.png ship.jpg
    python scripts/predict.py exported/lenet5_onnx digits.npy --runtime onnx --save probs.npy

INPUTS: one .npy array of uint8 images (N, H, W, C), or (N, H, W) for a
one-channel model, or image files (PNG, JPEG, BMP, GIF), decoded to the model's
channel count. Any integer or float array of whole numbers in [0, 255] is
accepted too. Preprocessing (padding/resizing, normalization, TTA, ensembling)
is inside the exported graph, so this script imports nothing of the project,
as a model server would not: it reads DIR/export.json for the accepted shape
and class names, and runs the model with one runtime (--runtime, by default
the one the folder's file needs): tf (TensorFlow, saved_model.pb), onnx (ONNX
Runtime, model.onnx) or litert (the LiteRT interpreter, model.tflite). Image
files are decoded with Pillow.
"""

import argparse
import json
import os
import sys
from pathlib import Path

try:
    import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)
except ImportError:  # predict.py copied alone next to an exported model
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

SIGNATURE = "serve"
METADATA_FILE = "export.json"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
# runtime: (the file it serves, its Python package)
RUNTIMES = {"tf": ("saved_model.pb", "tensorflow"), "onnx": ("model.onnx", "onnxruntime"),
            "litert": ("model.tflite", "ai-edge-litert")}


class Rejected(ValueError):
    """The runtime refused an input batch; the message is its reason."""


def _load_tf(directory):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(directory))
    if SIGNATURE not in loaded.signatures:
        raise ValueError(f"DIR={str(directory)!r} is not accepted; expected a SavedModel with a "
                         f"'{SIGNATURE}' signature (it has {sorted(loaded.signatures)})")
    serve = loaded.signatures[SIGNATURE]

    def run(images):
        try:
            return next(iter(serve(images=tf.constant(images)).values())).numpy()
        except tf.errors.InvalidArgumentError as error:
            lines = [ln.strip() for ln in (error.message or str(error)).splitlines() if ln.strip()]
            raise Rejected(next((ln for ln in lines if "assertion failed" in ln),
                                lines[-1] if lines else "")) from None

    run.keep = loaded  # the signature needs its SavedModel alive
    return run


def _load_onnx(directory):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(directory / RUNTIMES["onnx"][0]),
                                           providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(images):
        try:
            return session.run(None, {name: images})[0]
        except Exception as error:  # onnxruntime's InvalidArgument / Fail
            raise Rejected(" ".join(str(error).split())) from None

    return run


def _load_litert(directory):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(directory / RUNTIMES["litert"][0]),
                              num_threads=os.cpu_count())
    runner = interpreter.get_signature_runner()
    name = runner.get_input_details().popitem()[0]

    def run(images):
        try:
            return next(iter(runner(**{name: images}).values()))
        except (ValueError, RuntimeError) as error:
            raise Rejected(" ".join(str(error).split())) from None

    return run


LOADERS = {"tf": _load_tf, "onnx": _load_onnx, "litert": _load_litert}


def load_exported(directory, runtime=None):
    """(run: uint8 batch -> probabilities, export.json as a dict or {}, the runtime).

    Args:
        directory: a folder written by scripts/export.py.
        runtime: one of RUNTIMES; None picks the one whose file the folder holds.
    """
    directory = Path(directory)
    found = [name for name, (file, _) in RUNTIMES.items() if (directory / file).is_file()]
    if not found:
        raise ValueError(f"DIR={str(directory)!r} is not accepted; expected a folder written by "
                         "scripts/export.py (with "
                         + ", ".join(file for file, _ in RUNTIMES.values()) + ")")
    runtime = runtime or found[0]
    if runtime not in found:
        raise ValueError(f"--runtime={runtime!r} is not accepted for DIR={str(directory)!r}; "
                         f"expected {' or '.join(found)} (the folder holds "
                         f"{', '.join(RUNTIMES[name][0] for name in found)})")
    try:
        run = LOADERS[runtime](directory)
    except ImportError:
        raise ValueError(f"--runtime={runtime!r} is not accepted here; expected a runtime that is "
                         f"installed (pip install {RUNTIMES[runtime][1]})") from None
    meta_path = directory / METADATA_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return run, meta, runtime


def input_shape(meta):
    """The signature's (None, H, W, C) from export.json (H, W may be None), or None."""
    shape = meta.get("input", {}).get("shape")
    return tuple(shape) if shape else None


def accepted(shape):
    if shape is None:
        return "a uint8 batch (N, H, W, C)"
    _, height, width, channels = shape
    sides = f"{'H' if height is None else height}, {'W' if width is None else width}"
    one = f", or (N, {sides}) for this one-channel model" if channels == 1 else ""
    return f"uint8 images shaped (N, {sides}, {channels}){one}"


def check_images(images, shape, source):
    """`images` as a uint8 (N, H, W, C) batch the signature accepts, else a
    ValueError naming the source, what was received and what is accepted."""
    images = np.asarray(images)
    what = f"{source}: shape {images.shape} {images.dtype}"
    if shape is not None and images.ndim == 3 and shape[-1] == 1:
        images = images[..., None]
    if images.ndim != 4:
        raise ValueError(f"{what} (rank {images.ndim}) is not accepted; expected {accepted(shape)}"
                         + ("; add a leading axis for one image" if images.ndim == 3 else ""))
    if len(images) == 0:
        raise ValueError(f"{what} is not accepted; expected at least one image, "
                         f"{accepted(shape)} with N >= 1")
    if shape is not None:
        for axis, name in ((3, "channels"), (1, "height"), (2, "width")):
            if shape[axis] is not None and images.shape[axis] != shape[axis]:
                raise ValueError(f"{what} ({images.shape[axis]} {name}) is not accepted; "
                                 f"expected {accepted(shape)}")
    if images.dtype != np.uint8:
        numeric = (np.issubdtype(images.dtype, np.integer)
                   or np.issubdtype(images.dtype, np.floating))
        if not numeric or (images.size and (images.min() < 0 or images.max() > 255
                                            or np.any(images != np.round(images)))):
            raise ValueError(f"{what} is not accepted; expected pixel values: uint8, or whole "
                             "numbers in [0, 255] (not normalized or [0, 1] images)")
        images = images.astype(np.uint8)
    return images


def read_inputs(paths, shape):
    """[(source name, uint8 batch)] from one .npy file or image files."""
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise ValueError(f"INPUTS={missing!r} is not accepted; expected existing files: one .npy "
                         f"array or images ({', '.join(IMAGE_EXTENSIONS)})")
    suffixes = [Path(p).suffix.lower() for p in paths]
    if ".npy" in suffixes:
        if len(paths) != 1:
            raise ValueError(f"INPUTS={list(paths)!r} is not accepted; expected one .npy file "
                             "or image files, not both or several arrays")
        return [(paths[0], check_images(np.load(paths[0], allow_pickle=False), shape, paths[0]))]
    unknown = [p for p, s in zip(paths, suffixes) if s not in IMAGE_EXTENSIONS]
    if unknown:
        raise ValueError(f"INPUTS={unknown!r} is not accepted; expected a .npy array or images "
                         f"({', '.join(IMAGE_EXTENSIONS)})")
    channels = shape[-1] if shape else 0
    batches = []
    for path in paths:
        image = decode_image(path, channels)
        batches.append((path, check_images(image[None], shape, path)))
    return batches


def decode_image(path, channels):
    """An image file as a uint8 (H, W, C) array with `channels` (1 or 3; 0 keeps its own)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.seek(0)  # the first frame of an animation
            mode = {1: "L", 3: "RGB"}.get(channels) or ("L" if image.mode in ("L", "1")
                                                        else "RGB")
            array = np.asarray(image.convert(mode))
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"{path}: cannot decode the image ({error})") from None
    return array[..., None] if array.ndim == 2 else array


def predict(run, images, batch_size=256):
    """Probabilities (N, num_classes) from the runtime, in batches."""
    outputs = [np.asarray(run(images[start:start + batch_size]))
               for start in range(0, len(images), batch_size)]
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.float32)


def format_top_k(probs, k, names=None):
    order = np.argsort(-probs, kind="stable")[:k]
    def label(i):
        return f"{names[i]} ({i})" if names and names[i] != str(i) else str(i)
    return "  ".join(f"{label(i)} {probs[i]:.4f}" for i in order)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", metavar="DIR",
                        help="the exported folder (scripts/export.py --out)")
    parser.add_argument("inputs", nargs="+", metavar="INPUTS", help="one .npy array or image files")
    parser.add_argument("--runtime", help=f"{', '.join(RUNTIMES)} (default: the one the folder's "
                                          "file needs)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="classes printed per image (default: 5, or all when the model "
                             "has fewer)")
    parser.add_argument("--batch-size", type=int, default=256, help="images per runtime call")
    parser.add_argument("--save", help="also write the probabilities to this .npy file")
    args = parser.parse_args(argv)
    if args.runtime is not None and args.runtime not in RUNTIMES:
        parser.error(f"--runtime={args.runtime!r} is not accepted; expected one of "
                     f"{', '.join(RUNTIMES)}")
    if args.batch_size < 1:
        parser.error(f"--batch-size={args.batch_size} is not accepted; expected an integer >= 1")
    try:
        run, meta, _ = load_exported(args.directory, args.runtime)
        shape = input_shape(meta)
        inputs = read_inputs(args.inputs, shape)
        # export.json names the classes; a folder without it runs one image to count them
        num_classes = meta.get("num_classes") or predict(run, inputs[0][1][:1]).shape[-1]
    except ValueError as error:  # Rejected too
        parser.error(str(error))
    if args.top_k is None:
        args.top_k = min(5, num_classes)
    elif not 1 <= args.top_k <= num_classes:
        parser.error(f"--top-k={args.top_k} is not accepted; expected an integer in "
                     f"[1, {num_classes}] (the model's classes)")
    names = meta.get("class_names")
    all_probs = []
    for source, images in inputs:
        try:
            probs = predict(run, images, args.batch_size)
        except Rejected as error:
            parser.error(f"{source}: the model rejected shape {images.shape}: {error}")
        all_probs.append(probs)
        many = len(images) > 1 or source.endswith(".npy")
        for i, row in enumerate(probs):
            print(f"{source}[{i}]" if many else source, format_top_k(row, args.top_k, names))
    if args.save:
        try:
            np.save(args.save, np.concatenate(all_probs))
        except OSError as error:
            parser.error(f"--save={args.save!r}: {error.strerror}; choose a writable folder "
                         "with room")
    return 0


if __name__ == "__main__":
    sys.exit(main())
