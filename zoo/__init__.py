"""A configurable zoo of classic CNNs in Keras 3.

    import zoo
    model = zoo.create_model("resnet20", num_classes=10, activation="prelu")
    zoo.list_models("resnet*")

Model and layer code uses `keras` and `keras.ops` only, so every model also
runs with `KERAS_BACKEND=jax`.
"""

from zoo import alexnet, googlenet, lenet, resnet, vgg  # noqa: F401  (registers the variants)
from zoo.alexnet import AlexNet
from zoo.googlenet import GoogLeNet
from zoo.layers import LocalResponseNormalization, Maxout, StochasticDepth
from zoo.lenet import LeNet
from zoo.registry import create_model, list_models, register_model
from zoo.resnet import ResNet
from zoo.vgg import VGG

__all__ = [
    "AlexNet", "GoogLeNet", "LeNet", "ResNet", "VGG",
    "LocalResponseNormalization", "Maxout", "StochasticDepth",
    "create_model", "list_models", "register_model",
]
