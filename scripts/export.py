"""Export trained models as a SavedModel, ONNX or LiteRT file serving raw uint8 images.

    python scripts/export.py runs/lenet5_mnist/model.keras --out exported/lenet5
    python scripts/export.py runs/resnet20_cifar10/model.keras --tta 10crop --out exported/r20_tta
    python scripts/export.py runs/a/model.keras runs/b/model.keras --out exported/ensemble
    python scripts/export.py bare_network.keras --mean 0.1307 --std 0.3081 --out exported/m
    python scripts/export.py imagenet:resnet50 --weights torchvision --out exported/r50
    python scripts/export.py runs/lenet5_mnist/model.keras --format onnx --out exported/lenet5_onnx
    python scripts/export.py runs/lenet5_mnist/model.keras --format litert --quantize int8 \
        --data-dir ../shared/data --out exported/lenet5_int8

The exported model takes ``images`` (uint8, (N, H, W, C), any N) and returns
``probabilities``. Each model carries its input contract (the size it was
trained at, how other sizes are fitted, its normalization and class names), so
a .keras file exports alone, wherever it was copied to; export.json records the
contract. A SavedModel takes any H, W by default; ONNX and LiteRT take one size
(--raw-size, default the size the model was trained at, e.g. MNIST 28x28), as
export.json says. imagenet:NAME exports zoo model NAME with the ImageNet
weights of --weights (keras, torchvision or a weights file), their
preprocessing and class names. Several .keras files export one soft-voting
ensemble (members with the same classes; each fits the images to its own size
and normalization); --tta adds test-time views to the graph. A bare network
(a .keras file without a contract) needs --mean and --std. --quantize int8
(LiteRT) calibrates on 256 training images of the dataset the model names and
records the test accuracy it costs in export.json. Run
`python scripts/predict.py DIR INPUTS` on the result (the format's runtime and
numpy only).
"""

import argparse
import hashlib
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

import zoo
from augment import tta as augment_tta
from ensembles import EnsembleModel
from zoo.cli import args as types
from zoo.cli import storage
from zoo.contract import Classifier, InputContract, contract_of, network_input_shape
from zoo.serving import export
from zoo.training import rundir
from zoo.training.rundir import write_json

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
    parser.add_argument("--data-dir", help="where the model's dataset is, for --quantize "
                                           "(default: its run's own, else $ZOO_DATA_DIR, else "
                                           "keras.datasets)")
    parser.add_argument("--tta", help=f"test-time views: {', '.join(augment_tta.VIEWS)}")
    parser.add_argument("--tta-padding", type=types.positive_int,
                        help="TTA crop shift in pixels (default 2)")
    parser.add_argument("--mean", type=_floats,
                        help="a bare network only: per-channel mean of x/255 of its training "
                             "images")
    parser.add_argument("--std", type=_floats,
                        help="a bare network only: per-channel std of x/255")
    parser.add_argument("--raw-size", type=_size,
                        help="fix the input to HxW pixels (default: any size for a "
                             "SavedModel; the size the model was trained at for onnx and litert)")
    parser.add_argument("--labels",
                        help="class names: comma-separated, or a file with one per line "
                             "(default: the model's own)")
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


def load_models(parser, args):
    """Each MODEL.keras (or imagenet:NAME) as a model that takes raw images."""
    models = []
    for path in args.models:
        name = types.imagenet_name(path)
        try:
            model = (zoo.create_model(name, weights=args.weights) if name
                     else rundir.load_model(path))
        except ValueError as error:  # a damaged file, another architecture's weights
            parser.error(f"argument {'--weights' if name else 'MODEL.keras'}: {error}")
        if contract_of(model) is not None:
            if args.mean is not None:
                parser.error(f"--mean/--std are not accepted for {path}: it carries its own "
                             "normalization (they are for a bare network)")
        elif args.mean is None:
            parser.error(f"MODEL.keras={path!r} is a bare network (no input contract and no "
                         "run config.json beside it): pass --mean and --std (per-channel "
                         "statistics of x/255 of its training images)")
        else:
            model = wrap_bare(parser, model, args)
        models.append(model)
    return models


def wrap_bare(parser, network, args):
    """A bare network with the contract the flags give: images of its input
    size, zero-padded when smaller, normalized with --mean/--std."""
    try:
        shape = network_input_shape(network)
        return Classifier(network, InputContract(shape, args.mean, args.std))
    except ValueError as error:
        parser.error(f"--mean/--std: {error}")


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


def describe_sources(args):
    """export.json's record of the models: file names and content hashes (an
    export folder moves between machines; absolute paths would not)."""
    sources = []
    for path in args.models:
        if types.imagenet_name(path):
            sources.append({"model": path, "weights": Path(str(args.weights)).name})
            continue
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        sources.append({"file": Path(path).name, "sha256": digest})
    return sources


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


@storage.stopping_on_storage_errors(storage.AGAIN)
def main(argv=None):
    parser, args = parse_args(argv)
    models = load_models(parser, args)
    try:
        model = models[0] if len(models) == 1 else EnsembleModel(models, name="ensemble")
    except ValueError as error:
        parser.error(f"MODEL.keras: {error}")
    channels = contract_of(model).image_shape[-1]
    raw_size = args.raw_size
    if raw_size is None and not export.FORMATS[args.format].dynamic_size:
        raw_size = export.default_raw_size(model)
    raw_shape = (*raw_size, channels) if raw_size else None
    try:
        serving = export.serving_model(model, raw_shape=raw_shape, tta=args.tta,
                                       tta_padding=args.tta_padding)
    except ValueError as error:
        parser.error(str(error))
    num_classes = int(serving.output_shape[-1])
    names = read_labels(parser, args.labels, num_classes)
    if names is None:
        names = list(contract_of(model).class_names or []) or None
        names = names if names and len(names) == num_classes else None
    representative = test = None
    if args.quantize:
        try:
            data_dir = args.data_dir or rundir.recorded_data_dir(
                *(p for p in args.models if not types.imagenet_name(p)))
            representative, *test = export.dataset_images(model, REPRESENTATIVE_IMAGES, data_dir)
        except (ValueError, OSError) as error:
            parser.error(f"--quantize={args.quantize!r} needs training images: {error}")
        if representative.shape[1:] != raw_shape:
            parser.error(f"--raw-size={raw_shape[0]}x{raw_shape[1]} is not accepted with "
                         f"--quantize; expected the dataset's image size "
                         f"{representative.shape[1]}x{representative.shape[2]}")
    try:
        info = export.export_model(
            serving, args.out, args.format, overwrite=args.overwrite, quantize=args.quantize,
            representative=representative, metadata={
                "models": describe_sources(args), "ensemble": len(models) > 1, "tta": args.tta,
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
