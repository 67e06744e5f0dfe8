"""The published ImageNet checkpoints: where each source keeps them, their
published hashes and ImageNet-1k accuracies, and the preprocessing they expect.

The accuracies are the sources' own figures (single 224x224 centre crop of the
ILSVRC-2012 validation set): keras.io/api/applications and torchvision's
`Weights.meta`. They cannot be checked offline; docs/pretrained.md shows how
the conversion itself is verified.
"""

import dataclasses
from pathlib import Path

INPUT_SIZE = (224, 224)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # of x / 255, RGB (torchvision)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # the mean pixel in 0-255, BGR (keras.applications)
CLASS_NAMES_FILE = Path(__file__).with_name("imagenet_classes.txt")  # torchvision's meta


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """One published weights file.

    Attributes:
        name: the source's name of the network ("ResNet50", "vgg16_bn").
        url: where the source publishes it.
        file_hash: keras.applications' md5 (checked by `keras.utils.get_file`),
            or torchvision's sha256 prefix (the part of the file name after its
            last "-", checked as `torch.hub` does).
        top1, top5: the published ImageNet-1k validation accuracies, %.
    """

    name: str
    url: str
    file_hash: str
    top1: float
    top5: float

    @property
    def file(self):
        return self.url.rsplit("/", 1)[-1]


_KERAS = "https://storage.googleapis.com/tensorflow/keras-applications/"
KERAS = {  # zoo name: checkpoint (the files with the 1000-class head)
    "vgg16": Checkpoint("VGG16", _KERAS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
                        "64373286793e3c8b2b4e3219cbf3544b", 71.3, 90.1),
    "vgg19": Checkpoint("VGG19", _KERAS + "vgg19/vgg19_weights_tf_dim_ordering_tf_kernels.h5",
                        "cbe5617147190e668d6c5d5026f83318", 71.3, 90.0),
    "resnet50": Checkpoint("ResNet50",
                           _KERAS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                           "2cb95161c43110f7111970584f804107", 74.9, 92.1),
    "resnet101": Checkpoint("ResNet101",
                            _KERAS + "resnet/resnet101_weights_tf_dim_ordering_tf_kernels.h5",
                            "f1aeb4b969a6efcfb50fad2f0c20cfc5", 76.4, 92.8),
    "resnet152": Checkpoint("ResNet152",
                            _KERAS + "resnet/resnet152_weights_tf_dim_ordering_tf_kernels.h5",
                            "100835be76be38e30d865e96f2aaae62", 76.6, 93.1),
}

_TORCH = "https://download.pytorch.org/models/"
TORCHVISION = {  # torchvision name: checkpoint (IMAGENET1K_V1 of each)
    name: Checkpoint(name, _TORCH + file, file.rsplit("-", 1)[1].split(".")[0], top1, top5)
    for name, file, top1, top5 in (
        ("alexnet", "alexnet-owt-7be5be79.pth", 56.522, 79.066),
        ("vgg11", "vgg11-8a719046.pth", 69.020, 88.628),
        ("vgg11_bn", "vgg11_bn-6002323d.pth", 70.370, 89.810),
        ("vgg13", "vgg13-19584684.pth", 69.928, 89.246),
        ("vgg13_bn", "vgg13_bn-abd245e5.pth", 71.586, 90.374),
        ("vgg16", "vgg16-397923af.pth", 71.592, 90.382),
        ("vgg16_bn", "vgg16_bn-6c64b313.pth", 73.360, 91.516),
        ("vgg19", "vgg19-dcbb9e9d.pth", 72.376, 90.876),
        ("vgg19_bn", "vgg19_bn-c79401a0.pth", 74.218, 91.842),
        ("googlenet", "googlenet-1378be20.pth", 69.778, 89.530),
        ("resnet18", "resnet18-f37072fd.pth", 69.758, 89.078),
        ("resnet34", "resnet34-b627a593.pth", 73.314, 91.420),
        ("resnet50", "resnet50-0676ba61.pth", 76.130, 92.862),
        ("resnet101", "resnet101-63fe2227.pth", 77.374, 93.546),
        ("resnet152", "resnet152-394f9c45.pth", 78.312, 94.046),
    )
}


def imagenet_preprocessing():
    """torchvision's: RGB in [0, 1], minus the ImageNet mean, over its std."""
    return {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "input_size": list(INPUT_SIZE),
            "convention": "torchvision: RGB / 255, minus mean, over std (ImageNet statistics); "
                          "evaluated on a 224 centre crop of the image resized to 256"}


def inception_preprocessing():
    """torchvision's GoogLeNet: its `transform_input` turns ImageNet-normalized
    input into (x / 255 - 0.5) / 0.5, what the TF-slim weights were trained on;
    the zoo takes that directly."""
    return {"mean": [0.5] * 3, "std": [0.5] * 3, "input_size": list(INPUT_SIZE),
            "convention": "torchvision GoogLeNet (transform_input=True): (RGB / 255 - 0.5) / 0.5"}


def caffe_preprocessing():
    """keras.applications' VGG and ResNet v1 ("caffe" mode of preprocess_input):
    BGR in 0-255 minus the mean pixel. The converter reverses conv1's input
    channels, so the zoo model reads RGB: (x / 255 - mean) / std with the mean
    pixel in RGB order over 255 and std 1 / 255 is the same function."""
    return {"mean": [m / 255.0 for m in reversed(CAFFE_MEAN_BGR)], "std": [1 / 255.0] * 3,
            "input_size": list(INPUT_SIZE),
            "convention": "keras.applications caffe mode: BGR in 0-255 minus the mean pixel "
                          "(103.939, 116.779, 123.68); conv1 reversed to read RGB"}


def imagenet_class_names():
    """The 1000 ImageNet-1k class names in the order both sources' heads use."""
    return CLASS_NAMES_FILE.read_text().splitlines()
