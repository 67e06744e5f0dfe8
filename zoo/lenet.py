"""LeNet-5: LeCun, Bottou, Bengio & Haffner 1998, "Gradient-Based Learning
Applied to Document Recognition".

Layout C1 6@5x5 -> S2 -> C3 16@5x5 -> S4 -> C5 120@5x5 -> F6 84 -> output, on a
32x32 input (MNIST's 28x28 digits padded by 2, as in the paper). Two
simplifications, as in most reimplementations: C3 connects to all six S2 maps
rather than the paper's sparse table, and the output is a softmax rather than
Euclidean RBF units. `faithful=True` restores tanh, average pooling (the
paper's subsampling), LeCun's uniform init and no batch norm; the default is
the modern ReLU / max-pool / batch-norm variant.
"""

import keras

from zoo import resolve
from zoo.base import ZooModel, common_arguments, register_serializable, split_options
from zoo.registry import register_family, register_model

KERNEL = 5
POOL = 2
MIN_INPUT_SIZE = ((KERNEL * POOL + KERNEL - 1) * POOL) + KERNEL - 1  # 32: C5 sees 5x5


@register_serializable
class LeNet(ZooModel):
    """LeNet-5.

    Args:
        num_classes: output classes.
        input_shape: (height, width, channels), at least 32x32.
        faithful: paper defaults for activation, pooling, init and batch norm;
            options given explicitly still win.
        pooling: "max" or "avg" (the paper's subsampling).
        filters: channels of C1, C3, C5.
        hidden_units: width of F6.
        **options: the shared options (see `zoo.base.LayerBuilder`).
    """

    def __init__(self, num_classes=10, input_shape=(32, 32, 1), faithful=False, pooling=None,
                 filters=(6, 16, 120), hidden_units=84, name="lenet5", **options):
        paper = {"activation": "tanh", "kernel_initializer": "lecun_uniform", "batch_norm": False}
        options = {**(paper if faithful else {}), **options}
        pooling = pooling or ("avg" if faithful else "max")
        resolve.check_choice("pooling", pooling, ("max", "avg"))
        filters = resolve.check_int_list("filters", filters, length=3)
        resolve.check_positive_int("hidden_units", hidden_units)
        b, keras_kwargs = split_options(options)
        shape = common_arguments(num_classes, input_shape, MIN_INPUT_SIZE, name)
        pool_layer = (keras.layers.MaxPooling2D if pooling == "max"
                      else keras.layers.AveragePooling2D)

        inputs = keras.Input(shape)
        x = b.conv_norm_act(inputs, filters[0], KERNEL, "c1", padding="valid")
        x = pool_layer(POOL, name="s2")(x)
        x = b.conv_norm_act(x, filters[1], KERNEL, "c3", padding="valid")
        x = pool_layer(POOL, name="s4")(x)
        x = b.conv_norm_act(x, filters[2], KERNEL, "c5", padding="valid")
        x = keras.layers.Flatten(name="flatten")(x)
        x = b.hidden_dense(x, hidden_units, "f6")
        outputs = b.classifier(x, num_classes)

        config = {
            "num_classes": num_classes, "input_shape": list(shape), "faithful": faithful,
            "pooling": pooling, "filters": filters, "hidden_units": hidden_units, **b.config(),
        }
        self._finish(inputs, outputs, name, config, keras_kwargs)


@register_model
def lenet5(**kwargs):
    """LeNet-5, modern defaults (ReLU, max pooling, batch norm)."""
    return LeNet(**{"name": "lenet5", **kwargs})


@register_model
def lenet5_faithful(**kwargs):
    """LeNet-5 as in the 1998 paper: tanh, average pooling, no batch norm."""
    return LeNet(**{"name": "lenet5_faithful", "faithful": True, **kwargs})


# === Recipe and search space (plain data for zoo.cli and zoo.search) ===

# LeCun et al. 1998 trained 20 epochs on 32x32 padded digits; SGD with momentum
# and cosine decay replace their stochastic diagonal Levenberg-Marquardt. A
# paper's weight decay lambda on an SGD loss is l2 = lambda / 2 here.
RECIPE = dict(model="lenet5", dataset="mnist", image_size=32, epochs=20, batch_size=128,
              optimizer="momentum", lr=0.05, schedule="cosine", l2=5e-5,
              train_transform="resize", eval_transform="resize")
SEARCH_SPACE = {
    "full": {"width": [0.5, 1.0, 2.0], "hidden_units": [84, 168], "pooling": ["max", "avg"]},
    "tiny": {"width": [0.5, 1.0], "hidden_units": [16, 84], "pooling": ["max", "avg"]},
}
FILTERS = (6, 16, 120)  # C1, C3, C5: what the searched width multiplies


def search_model(scale, values):
    """lenet5 with the sampled width, F6 units and pooling (both scales)."""
    return "lenet5", {"filters": [max(1, int(round(c * values["width"]))) for c in FILTERS],
                      "hidden_units": values["hidden_units"], "pooling": values["pooling"]}


register_family("lenet", RECIPE, SEARCH_SPACE, search_model, paper="LeCun et al. 1998")
