"""torchvision's ImageNet weights (AlexNet, VGG11-19 with and without batch
norm, GoogLeNet, ResNet18-152) from its state dicts: .pth files through
`torch.load(weights_only=True)`, or the same tensors as .safetensors.

The architectures, in zoo options:
- AlexNet: the one-GPU variant (Krizhevsky 2014): filters 64/192/384/256/256,
  no LRN, no batch norm, `adaptive_pool=6` before the head.
- VGG: `adaptive_pool=7`; with batch norm (`vgg16_bn`; the zoo's default) the
  convolutions' biases are folded into the BatchNorms.
- GoogLeNet: TF-slim's Inception v1: batch norm with epsilon 1e-3,
  `branch5_kernel=3`, `pool_4e_size=2`, `padding="symmetric"` (ceil-mode
  pools); no auxiliary heads by default (torchvision ships them untrained).
- ResNet (v1.5: the stride on the 3x3): `padding="symmetric"`.
The first dense layer after a flatten (VGG, AlexNet) has its rows reordered
from PyTorch's NCHW flatten to the zoo's NHWC one.
"""

from zoo.pretrained import catalog, files

NAME = "torchvision"
TITLE = "torchvision"
SUFFIXES = files.TORCH_SUFFIXES + files.SAFETENSORS_SUFFIXES
TORCH_LAYOUT = True
FAMILY = {"alexnet": "alexnet", "googlenet": "googlenet",
          **{f"vgg{d}": "vgg" for d in (11, 13, 16, 19)},
          **{f"resnet{d}": "resnet" for d in (18, 34, 50, 101, 152)}}
# BatchNorm's step counters; torchvision's GoogLeNet file carries its untrained aux heads.
IGNORE = ("num_batches_tracked", "aux1.", "aux2.")
INCEPTION_MODULES = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")
BRANCHES = {"1x1": "branch1", "3x3_reduce": "branch2.0", "3x3": "branch2.1",
            "5x5_reduce": "branch3.0", "5x5": "branch3.1", "pool_proj": "branch4.1"}
ALEXNET_CONVS = (0, 3, 6, 8, 10)  # indices in `features`


def checkpoint_name(name, options):
    """torchvision's name: the zoo's VGG has batch norm by default (vgg16_bn)."""
    if FAMILY[name] == "vgg" and options.get("batch_norm", True):
        return f"{name}_bn"
    return name


def checkpoint(name, options):
    return catalog.TORCHVISION[checkpoint_name(name, options)]


def preprocessing(name):
    if name == "googlenet":
        return catalog.inception_preprocessing()
    return catalog.imagenet_preprocessing()


def layout(name, file):
    """(options the weights need, defaults the caller may override)."""
    family = FAMILY[name]
    if family == "resnet":
        return {"padding": "symmetric", "stride_in_1x1": False, "bn_epsilon": 1e-5,
                "batch_norm": True, "preact": False, "activation": "relu"}, {}
    if family == "vgg":  # a file says whether it has batch norm
        bn = file is None or "features.1.running_mean" in file
        return {"activation": "relu"}, {"adaptive_pool": 7, "batch_norm": bn}
    if family == "alexnet":
        return ({"geometry": "imagenet", "batch_norm": False, "lrn": False, "activation": "relu"},
                {"filters": [64, 192, 384, 256, 256], "adaptive_pool": 6})
    return ({"stem": "imagenet", "padding": "symmetric", "branch5_kernel": 3, "pool_4e_size": 2,
             "bn_epsilon": 1e-3, "batch_norm": True, "lrn": False, "activation": "relu"},
            {"aux_logits": False, "dropout": 0.2})


def _head_key(name, options):
    family = FAMILY[name]
    if family == "vgg":
        return f"classifier.{3 * len(options.get('head', (4096, 4096)))}"
    return "classifier.6" if family == "alexnet" else "fc"


def head_classes(name, file, options):
    """Classes of the file's classifier, or None when it has none."""
    key = f"{_head_key(name, options)}.weight"
    return int(file.arrays[key].shape[0]) if key in file else None


def convert(loader, name):
    {"alexnet": _alexnet, "vgg": _vgg, "googlenet": _googlenet,
     "resnet": _resnet}[FAMILY[name]](loader)


def _head(loader, prefix, flattened_nchw=False):
    kernel = f"{prefix}.weight" if f"{prefix}.weight" in loader.file else None
    loader.dense("predictions", kernel, f"{prefix}.bias", flattened_nchw=flattened_nchw,
                 head=True)


def _bias(loader, prefix):
    return f"{prefix}.bias" if f"{prefix}.bias" in loader.file else None


def _bn(prefix):
    return [f"{prefix}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]


def _alexnet(loader):
    for i, index in enumerate(ALEXNET_CONVS, start=1):
        prefix = f"features.{index}"
        loader.conv(f"conv{i}", f"{prefix}.weight", _bias(loader, prefix))
    loader.dense("fc6", "classifier.1.weight", "classifier.1.bias", flattened_nchw=True)
    loader.dense("fc7", "classifier.4.weight", "classifier.4.bias")
    _head(loader, "classifier.6")


def _vgg(loader):
    config = loader.model.get_config()
    bn, index = config["batch_norm"], 0
    for stage, convs in enumerate(config["convs_per_stage"], start=1):
        for i in range(1, convs + 1):
            prefix = f"features.{index}"
            loader.conv(f"block{stage}_conv{i}", f"{prefix}.weight", _bias(loader, prefix),
                        bn=_bn(f"features.{index + 1}") if bn else None)
            index += 3 if bn else 2  # conv, [batch norm,] ReLU
        index += 1  # the stage's max pool
    head = config["head"]
    for i in range(len(head)):
        loader.dense(f"fc{i + 1}", f"classifier.{3 * i}.weight", f"classifier.{3 * i}.bias",
                     flattened_nchw=i == 0)
    _head(loader, f"classifier.{3 * len(head)}", flattened_nchw=not head)


def _googlenet(loader):
    for ours, theirs in (("conv1", "conv1"), ("conv2_reduce", "conv2"), ("conv2", "conv3")):
        loader.conv(ours, f"{theirs}.conv.weight", bn=_bn(f"{theirs}.bn"))
    for module in INCEPTION_MODULES:
        for ours, theirs in BRANCHES.items():
            prefix = f"inception{module}.{theirs}"
            loader.conv(f"inception_{module}_{ours}", f"{prefix}.conv.weight",
                        bn=_bn(f"{prefix}.bn"))
    _head(loader, "fc")


def _resnet(loader):
    loader.conv("conv1", "conv1.weight", _bias(loader, "conv1"), bn=_bn("bn1"))
    config = loader.model.get_config()
    convs = 3 if config["block"] == "bottleneck" else 2
    for stage, depth in enumerate(config["depths"], start=1):
        for block in range(depth):
            ours, theirs = f"stage{stage}_block{block + 1}", f"layer{stage}.{block}"
            for i in range(1, convs + 1):
                prefix = f"{theirs}.conv{i}"
                loader.conv(f"{ours}_conv{i}", f"{prefix}.weight", _bias(loader, prefix),
                            bn=_bn(f"{theirs}.bn{i}"))
            if loader.has(f"{ours}_proj"):
                prefix = f"{theirs}.downsample"
                loader.conv(f"{ours}_proj", f"{prefix}.0.weight", _bias(loader, f"{prefix}.0"),
                            bn=_bn(f"{prefix}.1"))
    _head(loader, "fc")
