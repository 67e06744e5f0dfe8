"""A configurable zoo of classic CNNs in Keras 3: the model library.

    import zoo
    model = zoo.create_model("resnet20", num_classes=10, activation="prelu")
    zoo.list_models("resnet*")
    classifier = zoo.create_model("lenet5", preprocessing={    # raw images in
        "image_shape": (28, 28, 1), "mean": [0.1307], "std": [0.3081]})

Model and layer code uses `keras` and `keras.ops` only, so every model also
runs with `KERAS_BACKEND=jax`. This package (registry, option resolver, layer
builder, custom layers, the five family files, FLOP counts, the input contract
a trained model carries, `zoo.contract`) imports nothing of
the application built on it: `zoo.training`, `zoo.search`, `zoo.serving` and
`zoo.cli` (docs/architecture.md).
"""

# The families register their variants, recipes and search spaces on import.
# Imported to register; this order is the families' order in `list_families`.
from zoo import lenet, alexnet, vgg, googlenet, resnet  # noqa: F401,I001  (see above)
from zoo.alexnet import AlexNet
from zoo.contract import Classifier, InputContract, contract_of
from zoo.googlenet import GoogLeNet
from zoo.layers import AdaptiveAveragePooling, LocalResponseNormalization, Maxout, StochasticDepth
from zoo.lenet import LeNet
from zoo.registry import (create_model, default_input_shape, get_family, list_families,
                          list_models, min_input_size, register_family, register_model)
from zoo.resnet import ResNet
from zoo.vgg import VGG

__all__ = [
    "AlexNet", "GoogLeNet", "LeNet", "ResNet", "VGG", "Classifier", "InputContract", "contract_of",
    "AdaptiveAveragePooling", "LocalResponseNormalization", "Maxout", "StochasticDepth",
    "create_model", "default_input_shape", "get_family", "list_families", "list_models",
    "min_input_size",
    "register_family",
    "register_model",
]
