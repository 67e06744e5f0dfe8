"""Layers the zoo needs that Keras lacks, on `keras.ops` so every backend runs them.

- `Maxout`: Goodfellow et al. 2013, "Maxout Networks".
- `StochasticDepth`: Huang et al. 2016, "Deep Networks with Stochastic Depth".
- `LocalResponseNormalization`: Krizhevsky et al. 2012, section 3.3.
- `AdaptiveAveragePooling`: PyTorch's `AdaptiveAvgPool2d` (torchvision's VGG and AlexNet).
"""

import math

import keras
import numpy as np
from keras import ops

PACKAGE = "zoo"


@keras.saving.register_keras_serializable(package=PACKAGE)
class Maxout(keras.layers.Layer):
    """A maxout unit per output channel: `k` linear pieces, the max over them.

    `h_i(x) = max_j (x . W_ij + b_ij)` over the last (channel) axis, so on a
    feature map it acts as a 1x1 convolution with `units * pieces` outputs
    followed by a max over each group of `pieces`.

    Args:
        units: output channels; defaults to the input's channel count, so the
            layer can stand wherever an activation stands.
        pieces: number of linear pieces `k` (>= 2).
        kernel_initializer, kernel_regularizer: as for `keras.layers.Dense`.
    """

    def __init__(self, units=None, pieces=2, kernel_initializer="glorot_uniform",
                 kernel_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        if units is not None and (not isinstance(units, int) or units < 1):
            raise ValueError(f"units={units!r} is not accepted; expected a positive integer or "
                             "None")
        if not isinstance(pieces, int) or isinstance(pieces, bool) or pieces < 2:
            raise ValueError(f"pieces={pieces!r} is not accepted; expected an integer >= 2")
        self.units = units
        self.pieces = pieces
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        channels = input_shape[-1]
        units = self.units or channels
        self.kernel = self.add_weight(
            name="kernel", shape=(channels, units * self.pieces),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer,
        )
        self.bias = self.add_weight(name="bias", shape=(units * self.pieces,), initializer="zeros")

    def call(self, inputs):
        z = ops.matmul(inputs, self.kernel) + self.bias
        units = self.units or inputs.shape[-1]
        z = ops.reshape(z, tuple(ops.shape(z)[:-1]) + (units, self.pieces))
        return ops.max(z, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units or input_shape[-1],)

    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "pieces": self.pieces,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class StochasticDepth(keras.layers.Layer):
    """Drops a residual branch for whole samples during training.

    Each sample's branch is kept with probability `1 - rate` and scaled by
    `1 / (1 - rate)` when kept, so inference is the identity (the "drop path"
    form used by timm; Huang et al. scale at test time instead).
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"rate={rate!r} is not accepted; expected a number in [0, 1)")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        mask = keras.random.uniform(shape, seed=self.seed_generator, dtype=inputs.dtype) < keep
        return inputs * ops.cast(mask, inputs.dtype) / keep

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class LocalResponseNormalization(keras.layers.Layer):
    """Normalization across neighbouring channels (AlexNet, GoogLeNet stems).

    `b_i = a_i / (k + alpha * sum_{j in window(i)} a_j^2) ** beta`, the window
    covering `size` channels centred on `i`. Defaults are AlexNet's: size 5,
    k 2, alpha 1e-4, beta 0.75.
    """

    def __init__(self, size=5, k=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise ValueError(f"size={size!r} is not accepted; expected an odd positive integer")
        self.size, self.k, self.alpha, self.beta = size, float(k), float(alpha), float(beta)

    def call(self, inputs):
        # In float32 under mixed precision: squared activations overflow float16.
        dtype = inputs.dtype
        inputs = ops.cast(inputs, "float32")
        half = self.size // 2
        squared = ops.square(inputs)
        padded = ops.pad(squared, [[0, 0]] * (len(inputs.shape) - 1) + [[half, half]])
        channels = inputs.shape[-1]
        window_sum = sum(padded[..., i:i + channels] for i in range(self.size))
        return ops.cast(inputs / ops.power(self.k + self.alpha * window_sum, self.beta), dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size, "k": self.k, "alpha": self.alpha, "beta": self.beta,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class AdaptiveAveragePooling(keras.layers.Layer):
    """Average pooling to a fixed `size` x `size` output, whatever the input
    size (PyTorch's `AdaptiveAvgPool2d`): output cell i averages input rows
    floor(i * H / size) to ceil((i + 1) * H / size), and likewise columns, so
    windows overlap, and repeat rows when the input is smaller.

    Computed as two averaging matrices (static input sizes), so it runs on every
    backend at every input size (Keras 3.15's `AdaptiveAveragePooling2D` fails
    on a 1x1 input inside a TensorFlow graph).
    """

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size={size!r} is not accepted; expected an integer >= 1")
        self.size = size

    def build(self, input_shape):
        self.rows = self._matrix(input_shape[1])
        self.cols = self._matrix(input_shape[2])

    def _matrix(self, length):
        matrix = np.zeros((self.size, length), np.float32)
        for i in range(self.size):
            start, end = (i * length) // self.size, math.ceil((i + 1) * length / self.size)
            matrix[i, start:end] = 1.0 / (end - start)
        return matrix

    def call(self, inputs):
        rows = ops.cast(self.rows, inputs.dtype)
        cols = ops.cast(self.cols, inputs.dtype)
        return ops.einsum("ih,nhwc,jw->nijc", rows, inputs, cols)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "size": self.size}
