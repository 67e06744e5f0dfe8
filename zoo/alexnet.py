"""AlexNet: Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with
Deep Convolutional Neural Networks".

Five convolutions (11x11/4, 5x5, then three 3x3) with overlapping 3x3/2 max
pooling, then three fully connected layers with dropout 0.5. The two-GPU
grouping of the paper is folded into single layers, as in every
reimplementation. Local response normalization after conv1 and conv2 is
optional (`lrn=True`); batch norm is the modern replacement and on by default.
The CIFAR geometry keeps the layout at 32x32: 5x5 stride-1 first layer,
'same' pooling down to 4x4 and 1024-unit FC layers. torchvision's AlexNet is
the one-GPU variant of Krizhevsky 2014 ("One weird trick"): filters
64/192/384/256/256, no LRN, and `adaptive_pool=6` before the head.
"""

import keras

from zoo import resolve
from zoo.base import ZooModel, common_arguments, register_serializable, split_options
from zoo.layers import AdaptiveAveragePooling, LocalResponseNormalization
from zoo.registry import register_family, register_model

GEOMETRIES = {
    # first kernel, first stride, first padding, pool padding, filters, hidden units, default input
    "imagenet": dict(kernel=11, stride=4, pad=2, pool_padding="valid",
                     filters=(96, 256, 384, 384, 256), hidden_units=4096, input_shape=(224, 224,
                                                                                       3)),
    "cifar": dict(kernel=5, stride=1, pad=2, pool_padding="same",
                  filters=(64, 192, 384, 256, 256), hidden_units=1024, input_shape=(32, 32, 3)),
}
POOL, POOL_STRIDE = 3, 2


def _min_input_size(geometry):
    g = GEOMETRIES[geometry]
    if g["pool_padding"] == "same":
        return POOL_STRIDE ** 3
    size = POOL  # the last pool needs a 3x3 map; convolutions 2-5 keep the size
    for _ in range(2):
        size = (size - 1) * POOL_STRIDE + POOL
    return (size - 1) * g["stride"] + g["kernel"] - 2 * g["pad"]  # 63 for ImageNet


@register_serializable
class AlexNet(ZooModel):
    """AlexNet.

    Args:
        num_classes: output classes.
        input_shape: (height, width, channels); at least 63x63 (ImageNet
            geometry) or 8x8 (CIFAR geometry).
        geometry: "imagenet" or "cifar".
        lrn: local response normalization after conv1 and conv2.
        filters: channels of the five convolutions.
        hidden_units: width of the two hidden FC layers.
        adaptive_pool: None, or N: average-pool the last feature map to N x N
            before the head (torchvision's `AdaptiveAvgPool2d`, N = 6).
        dropout: on the outputs of fc6 and fc7 (0.5 in the paper).
        **options: the shared options (see `zoo.base.LayerBuilder`).
    """

    def __init__(self, num_classes=1000, input_shape=None, geometry="imagenet", lrn=False,
                 filters=None, hidden_units=None, adaptive_pool=None, dropout=0.5, name="alexnet",
                 **options):
        resolve.check_choice("geometry", geometry, tuple(GEOMETRIES))
        g = GEOMETRIES[geometry]
        filters = resolve.check_int_list("filters", filters or list(g["filters"]), length=5)
        hidden_units = resolve.check_positive_int("hidden_units", hidden_units or g["hidden_units"])
        if adaptive_pool is not None:
            resolve.check_positive_int("adaptive_pool", adaptive_pool)
        b, keras_kwargs = split_options({"dropout": dropout, **options})
        shape = common_arguments(
            num_classes, input_shape or g["input_shape"], _min_input_size(geometry), name
        )

        def pool(x, name):
            if g["pool_padding"] == "same":
                return b.max_pool(x, POOL, POOL_STRIDE, name)
            return keras.layers.MaxPooling2D(POOL, POOL_STRIDE, name=name)(x)

        inputs = keras.Input(shape)
        x = keras.layers.ZeroPadding2D(g["pad"], name="conv1_pad")(inputs)
        x = b.conv_norm_act(x, filters[0], g["kernel"], "conv1", strides=g["stride"],
                            padding="valid")
        if lrn:
            x = LocalResponseNormalization(name="conv1_lrn")(x)
        x = pool(x, "pool1")
        x = b.conv_norm_act(x, filters[1], 5, "conv2")
        if lrn:
            x = LocalResponseNormalization(name="conv2_lrn")(x)
        x = pool(x, "pool2")
        for i in (2, 3, 4):
            x = b.conv_norm_act(x, filters[i], 3, f"conv{i + 1}")
        x = pool(x, "pool5")
        if adaptive_pool:
            x = AdaptiveAveragePooling(adaptive_pool, name="adaptive_pool")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        x = b.hidden_dense(x, hidden_units, "fc6")
        x = b.hidden_dense(x, hidden_units, "fc7")
        outputs = b.classifier(x, num_classes)

        config = {
            "num_classes": num_classes, "input_shape": list(shape), "geometry": geometry,
            "lrn": lrn, "filters": filters, "hidden_units": hidden_units,
            "adaptive_pool": adaptive_pool, **b.config(),
        }
        self._finish(inputs, outputs, name, config, keras_kwargs)


@register_model
def alexnet(**kwargs):
    """AlexNet, ImageNet geometry (224x224)."""
    return AlexNet(**{"name": "alexnet", **kwargs})


@register_model
def alexnet_cifar(**kwargs):
    """AlexNet scaled for 32x32 images."""
    return AlexNet(**{"name": "alexnet_cifar", "geometry": "cifar", "num_classes": 10, **kwargs})


@register_model
def test_alexnet(**kwargs):
    """A tiny AlexNet-shaped network for fast tests."""
    return AlexNet(**{
        "name": "test_alexnet", "geometry": "cifar", "filters": (4, 8, 8, 8, 8),
        "hidden_units": 16, "input_shape": (16, 16, 1), "num_classes": 10, **kwargs,
    })


# === Recipe and search space (plain data for zoo.cli and zoo.search) ===

# Krizhevsky et al. 2012: SGD momentum 0.9, batch 128, lr 0.01 divided by 10
# twice, weight decay 5e-4 (l2 = 2.5e-4 here), dropout 0.5, ~90 epochs.
RECIPE = dict(model="alexnet_cifar", dataset="cifar10", epochs=90, batch_size=128,
              optimizer="momentum", lr=0.01, schedule="step", lr_milestones=(30, 60),
              l2=2.5e-4, augment="alexnet", train_transform="alexnet", eval_transform="center")
SEARCH_SPACE = {
    "full": {"width": [0.25, 0.5, 1.0], "hidden_units": [256, 512, 1024, 2048],
             "lrn": [True, False]},
    "tiny": {"width": [0.5, 1.0], "hidden_units": [8, 16], "lrn": [True, False]},
}
SEARCH_FILTERS = {"full": (64, 192, 384, 256, 256), "tiny": (4, 8, 8, 8, 8)}


def search_model(scale, values):
    """alexnet_cifar (test_alexnet when tiny) with the sampled width, FC units, LRN."""
    filters = [max(1, int(round(c * values["width"]))) for c in SEARCH_FILTERS[scale]]
    return ("alexnet_cifar" if scale == "full" else "test_alexnet"), {
        "filters": filters, "hidden_units": values["hidden_units"], "lrn": values["lrn"]}


register_family("alexnet", RECIPE, SEARCH_SPACE, search_model,
                paper="Krizhevsky et al. 2012")
