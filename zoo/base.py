"""What every zoo model shares: the layer builder and the functional base class.

A family resolves its options once into a `LayerBuilder`, builds its graph
from `keras.Input` with the builder's methods (every layer gets a stable,
explicit name), and hands inputs and outputs to `ZooModel`, which stores the
plain JSON-able config that `get_config`/`from_config` round-trip.
"""

import keras

from zoo import resolve
from zoo.layers import PACKAGE, Maxout

# Ioffe & Szegedy 2015; momentum 0.9 (PyTorch's 0.1) rather than Keras' 0.99 so
# the moving statistics follow short training runs.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
PRELU_INIT = 0.25  # He et al. 2015
PADDINGS = ("same", "symmetric")


class LayerBuilder:
    """Makes the layers of one model from its shared options.

    Args:
        activation: relu, leaky_relu, prelu, elu, selu, gelu, tanh, sigmoid,
            maxout, or any Keras activation name.
        kernel_initializer: glorot_uniform/normal (xavier), he_uniform/normal,
            lecun_uniform/normal, small_normal (std 0.01), or a Keras name.
        batch_norm: BatchNormalization after every convolution (conv bias off).
        kernel_regularizer: None, "l1", "l2", "l1_l2", "l2:5e-4" or
            {"l1": a, "l2": b}, applied to every kernel.
        dropout: rate on the output of each hidden fully connected layer (or
            before the classifier where the head has none), in [0, 1).
        leaky_relu_slope: negative slope for leaky_relu.
        maxout_pieces: linear pieces k for maxout (>= 2).
        classifier_activation: "softmax" (probabilities) or "linear"/None (logits).
        padding: of strided convolutions and pools: "same" (TensorFlow's: the
            odd pixel of padding at the bottom/right) or "symmetric" (PyTorch's
            and Caffe's: (k - 1) / 2 on every side, or no padding and the output
            size rounded up where the network pools in `ceil_mode`), as
            torchvision's and keras.applications' ImageNet weights need.
        bn_epsilon: BatchNorm's epsilon (1e-5; keras.applications' ResNets
            1.001e-5, torchvision's GoogLeNet 1e-3).
    """

    OPTIONS = (
        "activation", "kernel_initializer", "batch_norm", "kernel_regularizer", "dropout",
        "leaky_relu_slope", "maxout_pieces", "classifier_activation", "padding", "bn_epsilon",
    )

    def __init__(self, activation="relu", kernel_initializer="he_normal", batch_norm=True,
                 kernel_regularizer=None, dropout=0.0, leaky_relu_slope=0.01, maxout_pieces=2,
                 classifier_activation="softmax", padding="same", bn_epsilon=BN_EPSILON):
        self.activation = resolve.canonical_activation(activation)
        self.kernel_initializer = resolve.canonical_initializer(kernel_initializer)
        if not isinstance(batch_norm, bool):
            raise resolve.bad_option("batch_norm", batch_norm, "True or False")
        self.batch_norm = batch_norm
        self.kernel_regularizer = resolve.canonical_regularizer(kernel_regularizer)
        self.dropout = resolve.check_rate("dropout", dropout)
        if isinstance(leaky_relu_slope, bool) or not isinstance(leaky_relu_slope, (int, float)) \
                or leaky_relu_slope < 0:
            raise resolve.bad_option("leaky_relu_slope", leaky_relu_slope, "a number >= 0")
        self.leaky_relu_slope = float(leaky_relu_slope)
        self.maxout_pieces = resolve.check_positive_int("maxout_pieces", maxout_pieces, minimum=2)
        resolve.check_choice(
            "classifier_activation", classifier_activation, ("softmax", "linear", None)
        )
        self.classifier_activation = "softmax" if classifier_activation == "softmax" else None
        self.padding = resolve.check_choice("padding", padding, PADDINGS)
        self.bn_epsilon = float(resolve.check_number("bn_epsilon", bn_epsilon, low=0.0,
                                                     low_open=True))

    def config(self):
        return {name: getattr(self, name) for name in self.OPTIONS}

    def _kernel_args(self, zero_init=False):
        return {
            "kernel_initializer": "zeros" if zero_init else resolve.make_initializer(
                self.kernel_initializer
            ),
            "kernel_regularizer": resolve.make_regularizer(self.kernel_regularizer),
        }

    def conv(self, x, filters, kernel_size, name, strides=1, padding="same", zero_init=False):
        """A convolution; no bias when batch norm follows it.

        A strided 1x1 convolution is built as its equal, a 1x1 max pool with
        that stride (`NAME_subsample`: every `strides`-th pixel) then a 1x1
        convolution: on AVX-512 CPUs TensorFlow's oneDNN kernel for the weight
        gradient of a strided 1x1 convolution corrupts the heap (a crash)
        with narrow layers and odd batch sizes (TF 2.21; see
        `tests/test_zoo.py::test_strided_1x1_convolution_is_subsample_then_conv`).
        A larger strided 'same' convolution with `padding="symmetric"` is
        `NAME_pad` (zeros, (k - 1) / 2 per side) then a 'valid' convolution.
        """
        if kernel_size in (1, (1, 1)) and strides not in (1, (1, 1)):
            x = keras.layers.MaxPooling2D(1, strides, name=f"{name}_subsample")(x)
            strides = 1
        elif padding == "same" and strides not in (1, (1, 1)) and self.padding == "symmetric":
            x = keras.layers.ZeroPadding2D(_side(kernel_size) // 2, name=f"{name}_pad")(x)
            padding = "valid"
        return keras.layers.Conv2D(
            filters, kernel_size, strides=strides, padding=padding,
            use_bias=not self.batch_norm, name=name, **self._kernel_args(zero_init),
        )(x)

    def norm(self, x, name, zero_init=False):
        """BatchNorm when enabled; `zero_init` starts its gamma at 0 (Goyal et al. 2017)."""
        if not self.batch_norm:
            return x
        return keras.layers.BatchNormalization(
            momentum=BN_MOMENTUM, epsilon=self.bn_epsilon, name=name,
            gamma_initializer="zeros" if zero_init else "ones",
        )(x)

    def max_pool(self, x, pool_size, strides, name, ceil_mode=False):
        """A max pool padded as `padding` says: "same" (TensorFlow's), or
        "symmetric": (k - 1) / 2 pixels of -inf on every side (PyTorch's
        `padding=(k - 1) // 2`: a stride-1 'same' pool, then `NAME_subsample`
        keeps every `strides`-th pixel), or with `ceil_mode` no padding and the
        output size rounded up (PyTorch's `ceil_mode=True`, Caffe's pooling)."""
        if self.padding == "same" or strides == 1:
            return keras.layers.MaxPooling2D(pool_size, strides, padding="same", name=name)(x)
        if ceil_mode:
            return _ceil_mode_pool(x, pool_size, strides, name)
        x = keras.layers.MaxPooling2D(pool_size, 1, padding="same", name=name)(x)
        return keras.layers.MaxPooling2D(1, strides, name=f"{name}_subsample")(x)

    def act(self, x, name):
        if self.activation == "leaky_relu":
            layer = keras.layers.LeakyReLU(negative_slope=self.leaky_relu_slope, name=name)
        elif self.activation == "prelu":
            shared = [1, 2] if len(x.shape) == 4 else None  # one slope per channel
            layer = keras.layers.PReLU(
                alpha_initializer=keras.initializers.Constant(PRELU_INIT),
                shared_axes=shared, name=name,
            )
        elif self.activation == "maxout":
            layer = Maxout(pieces=self.maxout_pieces, name=name, **self._kernel_args())
        else:
            layer = keras.layers.Activation(self.activation, name=name)
        return layer(x)

    def conv_norm_act(self, x, filters, kernel_size, name, strides=1, padding="same"):
        """conv -> batch norm -> activation, named `name`, `name_bn`, `name_act`."""
        x = self.conv(x, filters, kernel_size, name, strides=strides, padding=padding)
        x = self.norm(x, f"{name}_bn")
        return self.act(x, f"{name}_act")

    def dense(self, x, units, name):
        return keras.layers.Dense(units, name=name, **self._kernel_args())(x)

    def dropout_layer(self, x, name, rate=None):
        rate = self.dropout if rate is None else rate
        return keras.layers.Dropout(rate, name=name)(x) if rate > 0 else x

    def hidden_dense(self, x, units, name):
        """dense -> activation -> dropout, a hidden fully connected layer of a head."""
        x = self.dense(x, units, name)
        x = self.act(x, f"{name}_act")
        return self.dropout_layer(x, f"{name}_dropout")

    def classifier(self, x, num_classes, name="predictions"):
        """The output layer; float32 under a mixed precision policy (`output_dtype`)."""
        return keras.layers.Dense(
            num_classes, activation=self.classifier_activation, name=name,
            dtype=output_dtype(), **self._kernel_args()
        )(x)


def _side(size):
    return size if isinstance(size, int) else size[0]


def _ceil_mode_pool(x, pool_size, strides, name):
    """PyTorch's `MaxPool2d(pool_size, strides, ceil_mode=True)` (no padding):
    windows start every `strides` pixels, the last may run past the bottom/right
    edge (cut there) but must start inside. A stride-1 'same' pool holds the
    max of every window (TensorFlow's padding never wins a max); cropping
    (k - 1) // 2 pixels at the start aligns them, `NAME_subsample` keeps every
    `strides`-th, and a crop at the end keeps PyTorch's output size."""
    before = (pool_size - 1) // 2
    crops = []
    for size in x.shape[1:3]:
        out = -(-(size - pool_size) // strides) + 1
        if (out - 1) * strides >= size:  # a window must start inside the input
            out -= 1
        after = size - before - ((out - 1) * strides + 1)
        if after < 0:  # the last window starts where the 'same' pool has none
            raise ValueError(f"ceil_mode max pool {pool_size}x{pool_size}/{strides} on {size} "
                             "pixels is not supported (GoogLeNet's 3/2 and 2/2 are)")
        crops.append((before, after))
    x = keras.layers.MaxPooling2D(pool_size, 1, padding="same", name=name)(x)
    x = keras.layers.Cropping2D(tuple(crops), name=f"{name}_crop")(x)
    return keras.layers.MaxPooling2D(1, strides, name=f"{name}_subsample")(x)


def output_dtype():
    """"float32" under a mixed precision policy (float16/bfloat16 compute, float32
    variables), else None (the global policy): the classifier then computes its
    logits, softmax and so the loss in float32, as mixed precision training
    requires (Micikevicius et al. 2018), and every model outputs float32."""
    policy = keras.config.dtype_policy()
    return "float32" if policy.compute_dtype != policy.variable_dtype else None


def split_options(options):
    """Separates the shared options from Keras' own constructor kwargs (and
    `pretrained`, the metadata `ZooModel` records)."""
    keras_kwargs = {k: options.pop(k) for k in ("trainable", "dtype", "pretrained")
                    if k in options}
    if not isinstance(keras_kwargs.get("pretrained", {}), (dict, type(None))):
        raise resolve.bad_option("pretrained", keras_kwargs["pretrained"],
                                 "None or the dict zoo.create_model(weights=...) records")
    unknown = set(options) - set(LayerBuilder.OPTIONS)
    if unknown:
        raise TypeError(
            f"unknown model option(s) {sorted(unknown)}; accepted: "
            + ", ".join(LayerBuilder.OPTIONS) + " and the family's own arguments"
        )
    return LayerBuilder(**options), keras_kwargs


class ZooModel(keras.Model):
    """Functional base: a family builds its graph, then calls `_finish`."""

    def _finish(self, inputs, outputs, name, config, keras_kwargs):
        keras_kwargs = dict(keras_kwargs)
        pretrained = keras_kwargs.pop("pretrained", None)
        super().__init__(inputs=inputs, outputs=outputs, name=name, **keras_kwargs)
        self._zoo_config = dict(config)
        if keras_kwargs.get("dtype") is not None:  # round-trips as given
            self._zoo_config["dtype"] = keras.dtype_policies.serialize(
                keras.dtype_policies.get(keras_kwargs["dtype"]))
        if pretrained is not None:
            self._zoo_config["pretrained"] = pretrained

    @property
    def pretrained(self):
        """What `zoo.create_model(weights=...)` recorded (source, file, the
        preprocessing the weights expect, class names), or None."""
        return self._zoo_config.get("pretrained")

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self._zoo_config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def auxiliary_loss(loss, y, y_pred, sample_weight=None):
    """The loss given to `compile` (`loss`) on an auxiliary output (GoogLeNet's
    heads), averaged over the batch as Keras' default reduction does."""
    loss = keras.losses.get(loss)
    if isinstance(loss, keras.losses.Loss):
        return loss(y, y_pred, sample_weight)
    values = loss(y, y_pred)
    if sample_weight is not None:
        values = values * keras.ops.cast(sample_weight, values.dtype)
    return keras.ops.mean(values)


def register_serializable(cls):
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)


def common_arguments(num_classes, input_shape, min_input_size, model_name):
    """Validates the two arguments every family takes; returns the input shape tuple."""
    resolve.check_positive_int("num_classes", num_classes)
    return resolve.check_input_shape(input_shape, min_input_size, model_name)
