"""Export trained models as a SavedModel, ONNX or LiteRT file serving raw uint8 images.

    python scripts/export.py runs/lenet5_mnist/model.keras --out exported/lenet5
    python scripts/export.py runs/resnet20_cifar10/model.keras --tta 10crop --out exported/r20_tta
    python scripts/export.py runs/a/model.keras runs/b/model.keras --out exported/ensemble
    python scripts/export.py model.keras --mean 0.1307 --std 0.3081 --out exported/m
    python scripts/export.py imagenet:resnet50 --weights torchvision --out exported/r50
    python scripts/export.py runs/lenet5_mnist/model.keras --format onnx --out exported/lenet5_onnx
    python scripts/export.py runs/lenet5_mnist/model.keras --format litert --quantize int8 \
        --data-dir ../shared/data --out exported/lenet5_int8

The exported model takes ``images`` (uint8, (N, H, W, C), any N; no larger than
the model's input is zero-padded centrally, as training pads MNIST, else
resized) and returns ``probabilities``. A SavedModel takes any H, W by
default; ONNX and LiteRT take one size (--raw-size, default the run's dataset
images, e.g. MNIST 28x28), as export.json says. Normalization comes from the
training run's config.json beside each .keras file, else from what a model
built from ImageNet weights records, else from --mean/--std. imagenet:NAME
exports zoo model NAME with the ImageNet weights of --weights (keras,
torchvision or a weights file), its preprocessing and class names. Several
.keras files export one soft-voting ensemble (members must share
normalization); --tta adds test-time views to the graph. --quantize int8
(LiteRT) calibrates on 256 of the run's training images and records the test
accuracy it costs in export.json. Run `python scripts/predict.py DIR INPUTS`
on the result (the format's runtime and numpy only).
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import startup  # noqa: E402,F401  (TensorFlow without its start-up noise; scripts/startup.py)
import zoo  # noqa: E402
from augment import tta as augment_tta  # noqa: E402
from zoo.cli import args as types  # noqa: E402
from zoo.serving import export  # noqa: E402
from zoo.training.rundir import write_json  # noqa: E402

REPRESENTATIVE_IMAGES = 256  # training images that calibrate int8 quantization


def _floats(text):
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not accepted; expected comma-separated numbers, one per channel")
    return values


def _size(text):
    parts = text.lower().replace("x", ",").split(",")
    try:
        sides = [int(p) for p in parts]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2) or min(sides) < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not accepted; expected a positive size N or HxW (pixels)")
    return tuple(sides * 2 if len(sides) == 1 else sides)


def parse_args(argv=None):
    parser = types.Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", metavar="MODEL.keras",
                        help="a trained model; several make a soft-voting ensemble; or "
                             "imagenet:NAME with --weights")
    parser.add_argument("--weights", metavar="SOURCE|FILE",
                        help="with imagenet:NAME: keras, torchvision (downloaded once) or a "
                             "weights file (.h5, .pth, .safetensors)")
    parser.add_argument("--out", required=True, help="output folder (the model and export.json)")
    parser.add_argument("--format", default="savedmodel",
                        help=f"{', '.join(export.FORMATS)} (default savedmodel)")
    parser.add_argument("--quantize", help="post-training quantization: int8 (litert)")
    parser.add_argument("--data-dir", help="where the run's dataset is, for --quantize "
                                           "(default: the run's own)")
    parser.add_argument("--tta", help=f"test-time views: {', '.join(augment_tta.VIEWS)}")
    parser.add_argument("--tta-padding", type=types.positive_int,
                        help="TTA crop shift in pixels (default: half the training crop "
                             "padding, or 2)")
    parser.add_argument("--mean", type=_floats,
                        help="per-channel mean of x/255 (without config.json)")
    parser.add_argument("--std", type=_floats,
                        help="per-channel std of x/255 (without config.json)")
    parser.add_argument("--image-size", type=_size,
                        help="the side training padded images to (checked against the "
                             "model's input)")
    parser.add_argument("--raw-size", type=_size,
                        help="fix the input to HxW pixels (default: any size for a "
                             "SavedModel; the dataset's image size for onnx and litert)")
    parser.add_argument("--labels",
                        help="class names: comma-separated, or a file with one per line")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    args = parser.parse_args(argv)
    try:
        export.check_format(args.format, args.quantize)
    except ValueError as error:
        parser.error(f"--{error}")
    if args.tta is not None and args.tta not in augment_tta.VIEWS:
        parser.error(f"--tta={args.tta!r} is not accepted; expected one of "
                     f"{', '.join(augment_tta.VIEWS)}")
    if (args.mean is None) != (args.std is None):
        parser.error("--mean and --std go together: pass both or neither")
    imagenet = [types.imagenet_name(m) for m in args.models if types.imagenet_name(m)]
    if args.weights is not None and not imagenet:
        parser.error("--weights goes with MODEL.keras=imagenet:NAME (a trained .keras file "
                     "has its weights)")
    for name in imagenet:
        types.check_imagenet(parser, "MODEL.keras", name, args.weights)
    for path in args.models:
        if types.imagenet_name(path):
            continue
        if not Path(path).is_file() or Path(path).suffix != ".keras":
            what = "a folder" if Path(path).is_dir() else ("a missing file" if not Path(path)
                                                           .exists() else "not a .keras file")
            parser.error(f"MODEL.keras={path!r} is not accepted ({what}); expected a model saved "
                         "as .keras, such as a run's model.keras")
    return parser, args


def resolve_settings(parser, args, models):
    """Normalization, resizing and TTA settings from each model's config.json,
    else what a model from ImageNet weights records, and the flags."""
    try:
        settings = [None if types.imagenet_name(path) else export.read_settings(path)
                    for path in args.models]
    except ValueError as error:  # a config.json that is not a training run's
        parser.error(f"{error}; pass --mean and --std instead")
    settings = [found or export.pretrained_settings(model)
                for found, model in zip(settings, models)]
    stats = set()
    for path, found in zip(args.models, settings):
        if args.mean is not None:
            stats.add((tuple(args.mean), tuple(args.std)))
        elif found is None:
            parser.error(f"no config.json beside {path}: pass --mean and --std (per-channel "
                         "statistics of x/255 on the training split)")
        else:
            stats.add((tuple(found["mean"]), tuple(found["std"])))
    if len(stats) > 1:
        parser.error("the models were trained with different normalization "
                     f"({sorted(stats)}); an ensemble export needs one: pass --mean/--std")
    mean, std = (list(v) for v in stats.pop())
    first = next((s for s in settings if s), {}) or {}
    return {**first, "mean": mean, "std": std, "crop_padding": first.get("crop_padding") or 0,
            "fit": first.get("fit") or "pad", "class_names": first.get("class_names")}


def read_labels(parser, text, num_classes):
    if text is None:
        return None
    path = Path(text)
    names = (path.read_text().splitlines() if path.is_file() else text.split(","))
    names = [n.strip() for n in names if n.strip()]
    if len(names) != num_classes:
        parser.error(f"--labels={text!r} is not accepted; expected {num_classes} class names "
                     f"(received {len(names)})")
    return names


def record_quantization_cost(serving, directory, info, images, labels, source):
    """Adds to export.json what quantization costs on the test images: the float
    serving model against the quantized file in its runtime (predict.py's loader)."""
    import predict

    run, _, _ = predict.load_exported(directory)
    reference = serving.predict(images, batch_size=256, verbose=0)
    info = {**info, "quantization": {**export.quantization_report(
        reference, predict.predict(run, images), labels), "data": source}}
    write_json(Path(directory) / export.METADATA_FILE, info)
    return info


def main(argv=None):
    parser, args = parse_args(argv)
    models = []
    for path in args.models:
        name = types.imagenet_name(path)
        if name:
            try:
                models.append(zoo.create_model(name, weights=args.weights))
            except ValueError as error:  # a damaged file, another architecture's weights
                parser.error(f"argument --weights: {error}")
            continue
        try:
            models.append(export.load_model(path))
        except Exception as error:  # a damaged or foreign archive: zip, JSON or h5py errors
            parser.error(f"MODEL.keras={path!r} is not accepted: it does not load as a Keras "
                         f"model ({type(error).__name__}: {str(error).splitlines()[0][:200]})")
    settings = resolve_settings(parser, args, models)
    model = models[0] if len(models) == 1 else export.average_models(models)
    height, width, channels = export.model_input_shape(model)
    if args.image_size and args.image_size != (height, width):
        parser.error(f"--image-size={args.image_size[0]}x{args.image_size[1]} is not accepted; "
                     f"expected the model's input size {height}x{width}")
    raw_size = args.raw_size
    if raw_size is None and not export.FORMATS[args.format].dynamic_size:
        raw_size = export.default_raw_size(settings, (height, width))
    raw_shape = (*raw_size, channels) if raw_size else None
    try:
        serving = export.serving_model(
            model, settings["mean"], settings["std"], raw_shape=raw_shape, tta=args.tta,
            crop_padding=settings["crop_padding"], tta_padding=args.tta_padding,
            fit=settings["fit"])
    except ValueError as error:
        parser.error(str(error))
    num_classes = int(serving.output_shape[-1])
    names = read_labels(parser, args.labels, num_classes)
    if names is None:
        names = export.CLASS_NAMES.get(settings.get("dataset")) or settings.get("class_names")
        names = names if names and len(names) == num_classes else None
    representative = test = None
    if args.quantize:
        try:
            representative, *test = export.dataset_images(
                settings, REPRESENTATIVE_IMAGES, args.data_dir, channels=channels)
        except (ValueError, OSError) as error:
            parser.error(f"--quantize={args.quantize!r} needs the run's training images: {error}")
        if representative.shape[1:] != raw_shape:
            parser.error(f"--raw-size={raw_shape[0]}x{raw_shape[1]} is not accepted with "
                         f"--quantize; expected the dataset's image size "
                         f"{representative.shape[1]}x{representative.shape[2]} (the model takes "
                         f"{channels} channels, the images have {representative.shape[3]})")
    try:
        info = export.export_model(
            serving, args.out, args.format, overwrite=args.overwrite, quantize=args.quantize,
            representative=representative, metadata={
                "models": [str(p) for p in args.models], "weights": args.weights,
                "ensemble": len(models) > 1, "tta": args.tta, "mean": settings["mean"],
                "std": settings["std"], "model_input_shape": [height, width, channels],
                "class_names": names})
    except ValueError as error:
        parser.error(str(error))
    if args.quantize:
        info = record_quantization_cost(serving, args.out, info, *test)
    size = info["fixed_size"]  # why a fixed-size format takes one size
    print(f"wrote {args.out} ({args.format}{', ' + args.quantize if args.quantize else ''}): "
          f"takes {info['input']['accepted']} as '{info['input']['name']}', returns "
          f"'{info['output']['name']}' ({num_classes} classes)"
          f"{' with ' + args.tta + ' TTA' if args.tta else ''}"
          f"{', an ensemble of ' + str(len(models)) if len(models) > 1 else ''}"
          f"{'; fixed size: ' + size if not export.FORMATS[args.format].dynamic_size else ''}")
    if args.quantize:
        cost = info["quantization"]
        print(f"{args.quantize}: test accuracy {cost['accuracy_float']:.4f} -> "
              f"{cost['accuracy_quantized']:.4f} ({cost['accuracy_change']:+.4f}) on "
              f"{cost['images']} images, top-1 agreement {cost['top1_agreement']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
