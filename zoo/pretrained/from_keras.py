"""keras.applications' ImageNet weights (VGG16/19: Simonyan & Zisserman 2014;
ResNet50/101/152 v1: He et al. 2015) from their HDF5 files.

The architectures, in zoo options:
- VGG16/19: `vgg16`/`vgg19` with `batch_norm=False` (the layer names are the
  same; `dropout=0` by default, keras.applications has none).
- ResNet v1: `stride_in_1x1=True`, `padding="symmetric"` (keras.applications
  pads explicitly, ZeroPadding2D then 'valid', where TensorFlow's 'same' would
  pad the stride-2 stem and pool asymmetrically), BatchNorm epsilon 1.001e-5,
  and a bias in every convolution, folded into the BatchNorm after it.
The weights expect caffe-style input (BGR, the mean pixel subtracted):
conv1's input channels are reversed so the zoo model reads RGB, and its
recorded preprocessing is the same function in RGB (`catalog.caffe_preprocessing`).
"""

import keras

from zoo.pretrained import catalog, files

NAME = "keras"
TITLE = "keras.applications"
SUFFIXES = files.HDF5_SUFFIXES
TORCH_LAYOUT = False
FAMILY = {"vgg16": "vgg", "vgg19": "vgg", "resnet50": "resnet", "resnet101": "resnet",
          "resnet152": "resnet"}
IGNORE = ()
BN_EPSILON = 1.001e-5  # keras.applications' ResNets


def checkpoint_name(name, options):
    return catalog.KERAS[name].name


def checkpoint(name, options):
    return catalog.KERAS[name]


def preprocessing(name):
    return catalog.caffe_preprocessing()


def layout(name, file):
    """(options the weights need, defaults the caller may override)."""
    if FAMILY[name] == "vgg":
        return {"batch_norm": False, "activation": "relu"}, {"dropout": 0.0}
    return {"stride_in_1x1": True, "padding": "symmetric", "bn_epsilon": BN_EPSILON,
            "batch_norm": True, "preact": False, "activation": "relu"}, {}


def head_classes(name, file, options):
    """Classes of the file's classifier, or None when it has none."""
    keys = file.groups.get("predictions")
    return int(file.arrays[keys[0]].shape[-1]) if keys else None


def convert(loader, name):
    (_vgg if FAMILY[name] == "vgg" else _resnet)(loader)


def _weights(loader, layer, count, what):
    return loader.file.group(layer, count, f"{loader.model.name}'s layer {what!r}")


def _vgg(loader):
    first = True
    for layer in loader.model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = _weights(loader, layer.name, 2, layer.name)
            loader.conv(layer.name, kernel, bias, reverse_input=first)
            first = False
        elif isinstance(layer, keras.layers.Dense):
            _dense(loader, layer.name)


def _resnet(loader):
    def unit(ours, theirs, reverse_input=False):
        kernel, bias = _weights(loader, f"{theirs}_conv", 2, ours)
        bn = _weights(loader, f"{theirs}_bn", 4, f"{ours}_bn")
        loader.conv(ours, kernel, bias, bn=bn, reverse_input=reverse_input)

    unit("conv1", "conv1", reverse_input=True)
    config = loader.model.get_config()
    convs = 3 if config["block"] == "bottleneck" else 2
    for stage, depth in enumerate(config["depths"], start=1):
        for block in range(1, depth + 1):
            ours, theirs = f"stage{stage}_block{block}", f"conv{stage + 1}_block{block}"
            for i in range(1, convs + 1):
                unit(f"{ours}_conv{i}", f"{theirs}_{i}")
            if loader.has(f"{ours}_proj"):
                unit(f"{ours}_proj", f"{theirs}_0")
    _dense(loader, "predictions")


def _dense(loader, name):
    head = name == "predictions"
    if head and name not in loader.file.groups:  # a "notop" file
        loader.dense(name, None, None, head=True)
        return
    kernel, bias = _weights(loader, name, 2, name)
    loader.dense(name, kernel, bias, head=head)
