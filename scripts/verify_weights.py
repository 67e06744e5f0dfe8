"""Verifies the ImageNet weight converters (`zoo.pretrained`) against the
sources' own networks: for every model of a source, a randomly initialised
reference (keras.applications with weights=None; torchvision with its default
init), whose BatchNorm statistics and biases are randomised too so that every
tensor matters, is saved in the source's format; the zoo loads the file with
`zoo.create_model(name, weights=FILE)`, both see the same random uint8 images
through their own preprocessing, and their logits are compared:
max |difference| / max |logit| <= 1e-5 and the same top-1 on every image.

    python scripts/verify_weights.py keras --out /tmp/verify              # keras rows
    python scripts/verify_weights.py dump --out /tmp/verify               # needs torchvision
    python scripts/verify_weights.py torchvision --out /tmp/verify        # torchvision rows

torchvision imports only with PyTorch's full build, which may live in another
environment than the zoo: `dump` needs torch, torchvision, numpy and
safetensors alone (not Keras) and writes, per model, its state dict as .pth
and .safetensors, the images and the reference logits (.npz); `torchvision`
then converts and compares in the zoo's environment (.pth too when PyTorch
imports there). Prints a markdown table; `--json` also writes it.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

TOLERANCE = 1e-5  # max |difference| / max |logit|, float32
KERAS_MODELS = ("vgg16", "vgg19", "resnet50", "resnet101", "resnet152")
TORCHVISION_MODELS = ("alexnet", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
                      "vgg19", "vgg19_bn", "googlenet", "resnet18", "resnet34", "resnet50",
                      "resnet101", "resnet152")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
BATCH = 16


def images(count, height, width, seed):
    """`count` random uint8 RGB images (N, H, W, 3)."""
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def compare(reference, logits):
    """{"relative": max |diff| / max |logit|, "top1": fraction of equal argmax, "ok"}."""
    reference, logits = np.asarray(reference, np.float64), np.asarray(logits, np.float64)
    relative = float(np.abs(reference - logits).max() / np.abs(reference).max())
    top1 = float(np.mean(reference.argmax(-1) == logits.argmax(-1)))
    return {"relative": relative, "top1": top1, "ok": relative <= TOLERANCE and top1 == 1.0}


# === keras.applications (the zoo's environment) ===

def keras_reference(name, input_shape):
    """keras.applications' `name` with random weights, logits out."""
    import keras

    build = {"vgg16": keras.applications.VGG16, "vgg19": keras.applications.VGG19,
             "resnet50": keras.applications.ResNet50, "resnet101": keras.applications.ResNet101,
             "resnet152": keras.applications.ResNet152}[name]
    return build(weights=None, input_shape=tuple(input_shape), classifier_activation=None)


def keras_preprocess(name, x):
    import keras

    module = keras.applications.vgg16 if name.startswith("vgg") else keras.applications.resnet
    return module.preprocess_input(np.asarray(x, np.float32).copy())


def randomize_keras(model, seed=0):
    """Random BatchNorm statistics and affine parameters, and random biases
    (keras' initialization leaves them at 0/1, where a wrong mapping of them
    would go unnoticed)."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c),
                               rng.normal(0, 0.2, c), rng.uniform(0.5, 1.5, c)])
        elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and layer.use_bias:
            kernel = keras.ops.convert_to_numpy(layer.kernel)
            layer.set_weights([kernel, rng.normal(0, 0.1, layer.bias.shape[0])])


def write_keras_h5(model, path):
    """`model`'s weights in the HDF5 layout of keras.applications' files (Keras
    2's `save_weights`, which Keras 3's `load_weights` reads for .h5)."""
    import h5py
    import keras

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode() for layer in model.layers]
        f.attrs["backend"], f.attrs["keras_version"] = b"tensorflow", b"2.2.4"
        for layer in model.layers:
            group = f.create_group(layer.name)
            names = [f"{layer.name}/{w.name}:0" for w in layer.weights]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for name, w in zip(names, layer.weights):
                group.create_dataset(name, data=keras.ops.convert_to_numpy(w))


def zoo_logits(model, x):
    """The zoo model's logits on uint8 images: it normalizes them itself, as its
    input contract (the weights' mean and std) says."""
    return model.predict(np.asarray(x), batch_size=BATCH, verbose=0)


def verify_keras(name, size, out, count, seed):
    import keras

    import zoo

    reference = keras_reference(name, (*size, 3))
    randomize_keras(reference, seed)
    path = Path(out) / f"keras_{name}_{size[0]}x{size[1]}.h5"
    write_keras_h5(reference, path)
    x = images(count, *size, seed=seed)
    expected = reference.predict(keras_preprocess(name, x), batch_size=BATCH, verbose=0)
    del reference
    keras.backend.clear_session()
    model = zoo.create_model(name, weights=path, input_shape=(*size, 3),
                             classifier_activation="linear")
    result = compare(expected, zoo_logits(model, x))
    path.unlink()
    return result


# === torchvision, step 1: its environment (torch, torchvision, safetensors) ===

def torchvision_reference(name, seed=0):
    """torchvision's `name` with its default initialization (GoogLeNet as its
    ImageNet weights run it: transform_input, no aux heads), BatchNorm
    statistics and affine parameters and the biases (VGG's init zeroes them)
    randomised, in eval mode."""
    import torch
    import torchvision

    torch.manual_seed(seed)
    kwargs = ({"aux_logits": False, "transform_input": True, "init_weights": True}
              if name == "googlenet" else {})
    model = getattr(torchvision.models, name)(weights=None, **kwargs)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
                module.running_mean.normal_(0, 0.2)
                module.running_var.uniform_(0.5, 1.5)
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and module.bias is not None:
                module.bias.normal_(0, 0.05)
    return model.eval()


def torchvision_logits(model, x):
    """Logits on uint8 NHWC images, preprocessed as torchvision's ImageNet
    transforms do (x / 255, minus mean, over std)."""
    import torch

    x = (np.asarray(x, np.float32) / 255.0 - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        return torch.cat([model(x[i:i + BATCH]) for i in range(0, len(x), BATCH)]).numpy()


def dump_torchvision(name, size, out, count, seed):
    """Writes OUT/NAME_HxW.{pth,safetensors,npz} (state dict, images, logits)."""
    import torch
    from safetensors.torch import save_file

    model = torchvision_reference(name, seed)
    x = images(count, *size, seed=seed)
    stem = Path(out) / f"torchvision_{name}_{size[0]}x{size[1]}"
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(state, f"{stem}.pth")
    save_file(state, f"{stem}.safetensors")
    np.savez(f"{stem}.npz", images=x, logits=torchvision_logits(model, x))
    return stem


# === torchvision, step 2: the zoo's environment ===

def verify_torchvision(name, size, out, fmt):
    import keras

    import zoo

    stem = Path(out) / f"torchvision_{name}_{size[0]}x{size[1]}"
    dumped = np.load(f"{stem}.npz")
    model = zoo.create_model(name.removesuffix("_bn"), weights=f"{stem}.{fmt}",
                             input_shape=(*size, 3), classifier_activation="linear")
    result = compare(dumped["logits"], zoo_logits(model, dumped["images"]))
    del model
    keras.backend.clear_session()
    return result


def torch_imports():
    try:
        import torch  # noqa: F401  (only whether it imports)
    except ImportError:
        return False
    return True


def parse_sizes(text):
    """"224,97x131" -> [(224, 224), (97, 131)] (argparse type; no Keras here)."""
    try:
        sizes = []
        for item in text.split(","):
            parts = [int(p) for p in item.lower().split("x")]
            if len(parts) > 2 or min(parts) < 32:
                raise ValueError
            sizes.append((parts[0], parts[-1]))
        return sizes
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not accepted; expected comma-separated sizes N or HxW, each >= 32 "
            "(e.g. 224,97x131)") from None


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not accepted; expected an integer >= 1")
    return value


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("keras", "dump", "torchvision"))
    parser.add_argument("--out", required=True, help="folder for the files and dumps")
    parser.add_argument("--models", default=None, help="comma-separated (default: all)")
    parser.add_argument("--sizes", type=parse_sizes, default=[(224, 224)],
                        help="input sizes, e.g. 224,97x131 (default: 224)")
    parser.add_argument("--images", type=positive_int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", default=None,
                        help="torchvision files to convert: pth,safetensors (default: both "
                             "where PyTorch imports, else safetensors)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    sizes = args.sizes
    every = KERAS_MODELS if args.step == "keras" else TORCHVISION_MODELS
    models = args.models.split(",") if args.models else every
    unknown = [m for m in models if m not in every]
    if unknown:
        parser.error(f"argument --models: {unknown[0]!r} is not accepted; expected "
                     f"comma-separated names from {', '.join(every)} (step {args.step})")
    formats = args.formats.split(",") if args.formats else None
    if formats and not set(formats) <= {"pth", "safetensors"}:
        parser.error(f"argument --formats: {args.formats!r} is not accepted; expected pth, "
                     "safetensors or both")
    if args.step == "torchvision":
        missing = [f"torchvision_{m}_{h}x{w}.npz" for m in models for h, w in sizes
                   if not (Path(args.out) / f"torchvision_{m}_{h}x{w}.npz").is_file()]
        if missing:
            parser.error(f"{missing[0]} is not in --out {args.out}: run `verify_weights.py dump "
                         "--out DIR` (with torchvision) for the same --models and --sizes first")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.step == "dump":  # torch alone: it must load before TensorFlow, if at all
        for name in models:
            for size in sizes:
                start = time.perf_counter()
                stem = dump_torchvision(name, size, args.out, args.images, args.seed)
                print(f"{stem} ({time.perf_counter() - start:.0f} s)", flush=True)
        return 0

    import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

    formats = formats or (["pth", "safetensors"] if torch_imports() else ["safetensors"])
    runs = ([("keras", "h5")] if args.step == "keras" else
            [("torchvision", fmt) for fmt in formats])
    rows = []
    print("| source | model | file | input | max abs diff / max abs logit | same top-1 | |")
    print("| --- | --- | --- | --- | ---: | ---: | --- |")
    for name in models:
        for size in sizes:
            for source, fmt in runs:
                result = (verify_keras(name, size, args.out, args.images, args.seed)
                          if source == "keras" else
                          verify_torchvision(name, size, args.out, fmt))
                rows.append({"source": source, "model": name, "format": fmt,
                             "input": f"{size[0]}x{size[1]}", **result})
                print(f"| {source} | {name} | .{fmt} | {size[0]}x{size[1]} | "
                      f"{result['relative']:.1e} | {100 * result['top1']:.0f}% of {args.images} | "
                      f"{'ok' if result['ok'] else 'FAIL'} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
