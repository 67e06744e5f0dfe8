"""ImageNet weights for the zoo's models: `zoo.create_model(name, weights=...)`.

    model = zoo.create_model("resnet50", weights="torchvision")          # downloads
    model = zoo.create_model("resnet50", weights="resnet50-0676ba61.pth")  # offline
    model = zoo.create_model("vgg16", weights="keras", num_classes=10)     # new head

`weights` is a source, "keras" (keras.applications: vgg16, vgg19, resnet50,
resnet101, resnet152) or "torchvision" (alexnet, vgg11-19 with or without
batch norm, googlenet, resnet18-152), whose published file is downloaded with
`keras.utils.get_file`, checked against its published hash and cached under
the Keras cache dir (~/.keras/models); or the path of such a file: .h5
(keras.applications), .pth/.pt (torchvision, read with
`torch.load(weights_only=True)`) or .safetensors (the same tensors, no PyTorch).

The model is built in the source's architecture (`layout` of `from_keras`,
`from_torchvision`: padding, BatchNorm epsilon, ...; an option that contradicts
it is an error), the file is converted and checked tensor by tensor
(`convert.Loader`), and the model's config records what the weights expect
(`ZooModel.pretrained`: source, file, mean/std of x / 255 in RGB, input size,
the ImageNet class names when the head is the file's), which training,
fine-tuning and export read. With another `num_classes` the classifier starts
fresh (the transfer-learning case), said in one line on stderr.
"""

import os
import sys
from pathlib import Path

from zoo import resolve
from zoo.pretrained import catalog, files, from_keras, from_torchvision
from zoo.pretrained.convert import Loader

SOURCES = {source.NAME: source for source in (from_keras, from_torchvision)}
ACCEPTED = ("None, " + ", ".join(repr(s) for s in SOURCES) + ", or the path of a weights file ("
            + ", ".join(files.HDF5_SUFFIXES + files.TORCH_SUFFIXES + files.SAFETENSORS_SUFFIXES)
            + ")")


def source_of(name, weights):
    """(source module, file path or None to download) for `weights` of model
    `name`, checked without reading or downloading anything."""
    if isinstance(weights, str) and weights in SOURCES:
        source, path = SOURCES[weights], None
    elif isinstance(weights, (str, os.PathLike)) and str(weights):
        path = Path(weights)
        source = next((s for s in SOURCES.values() if path.suffix.lower() in s.SUFFIXES), None)
        if source is None:
            raise resolve.bad_option("weights", str(weights), ACCEPTED)
        if not path.is_file():
            raise resolve.bad_option("weights", str(weights), f"{ACCEPTED}: no such file")
    else:
        raise resolve.bad_option("weights", weights, ACCEPTED)
    if name not in source.FAMILY:
        raise resolve.bad_option("weights", str(weights), (
            f"None for {name}: the {source.TITLE} ImageNet weights are for "
            + ", ".join(source.FAMILY)))
    return source, path


def check(name, weights, options=None):
    """Raises the ValueError `create` would for a bad `weights` value, or for
    `options` that contradict the weights' architecture, without reading them."""
    source, _ = source_of(name, weights)
    _check_layout(name, source, source.layout(name, None)[0], options or {})


def _check_layout(name, source, required, options):
    for key, value in required.items():
        if options.get(key) is not None and options[key] != value:
            raise resolve.bad_option(key, options[key], (
                f"{value!r} with the {source.TITLE} weights for {name} (the architecture "
                "they were trained in)"))


def architecture(name, weights):
    """The options that build `name` in the architecture of `weights` (the
    defaults a weights file itself would settle, such as VGG's batch norm,
    taken as the published file's)."""
    source, _ = source_of(name, weights)
    required, defaults = source.layout(name, None)
    return {**defaults, **required}


def preprocessing(name, weights):
    """What model `name` with `weights` expects: {"mean", "std" (of x / 255,
    RGB), "input_size", "convention"}."""
    source, _ = source_of(name, weights)
    return source.preprocessing(name)


def create(name, weights, build, options):
    """Model `name` (`build(**options)`) in the architecture of `weights`,
    loaded from them (see the module docstring), and the input contract the
    weights give (`contract_defaults`)."""
    source, path = source_of(name, weights)
    if path is None:
        path = Path(files.fetch(source.checkpoint(name, options)))
    file = files.read(path)
    required, defaults = source.layout(name, file)
    _check_layout(name, source, required, options)
    options = {**defaults, **options, **required}
    file_classes = source.head_classes(name, file, options)
    own_head = options.get("num_classes", 1000) == file_classes
    pretrained = {
        "source": source.NAME, "file": path.name, "model": source.checkpoint_name(name, options),
        **source.preprocessing(name), "num_classes": file_classes,
        "class_names": (catalog.imagenet_class_names() if own_head and file_classes == 1000
                        else None),
    }
    model = build(**options, pretrained=pretrained)
    loader = Loader(model, file, torch_layout=source.TORCH_LAYOUT)
    source.convert(loader, name)
    new = loader.finish(ignore=source.IGNORE, may_stay_new=("aux",))
    if new:
        print(f"{name}: {source.TITLE} weights loaded from {path.name}, but not into "
              + "; ".join(f"{layer} ({why})" for layer, why in new.items())
              + ": these start from their initialization (train them; docs/pretrained.md)",
              file=sys.stderr)
    return model, contract_defaults(model, pretrained)


def contract_defaults(network, recorded):
    """The input contract the weights give (`zoo.contract.InputContract`
    fields): the network's input size, resized to as the weights' training
    did, their mean and std, the ImageNet class names when the head is theirs."""
    return {"image_shape": tuple(network.input_shape[1:]), "mean": recorded["mean"],
            "std": recorded["std"], "fit": "resize", "class_names": recorded["class_names"],
            "dataset": "imagenet" if recorded["class_names"] else None}
