"""Augmentation layers Keras lacks, on `keras.ops` so every backend runs them.

- `RandomPadCrop`: zero-pad and take a random crop of the original size, a
  different offset per image, optionally mirrored (the CIFAR recipe of He et
  al. 2015, section 4.2). `keras.layers.RandomCrop` draws one offset per
  batch; fusing the flip into the crop's gather makes crop + flip one pass
  (`keras.layers.RandomFlip` alone cost as much as the whole fused layer on
  this project's 2-core CPU in tf.data).
- `PCALighting`: "fancy PCA" colour noise, Krizhevsky et al. 2012, section 4.1.

Every layer takes either an image tensor (H, W, C) or (N, H, W, C), or a dict
with an ``"images"`` entry (the other entries, e.g. ``"labels"``, pass
through), like Keras' own image preprocessing layers, so they stack with
`keras.layers.MixUp` / `CutMix` in a `keras.layers.Pipeline`. Randomness comes
from a `keras.random.SeedGenerator(seed)`, draws are per image, and
`training=False` is the identity. They work on pixel values in [0, 255]: the
model normalizes its input itself (`zoo.contract.Classifier`).
"""

import keras
import numpy as np
from keras import ops

from zoo.resolve import bad_option

PACKAGE = "augment"
# Images used to estimate the RGB covariance for PCA lighting (a seeded subset).
PCA_SAMPLE_IMAGES = 10_000


def _unpack(data):
    return (data["images"], data) if isinstance(data, dict) else (data, None)


def _repack(images, data):
    return images if data is None else {**data, "images": images}


class _ImageLayer(keras.layers.Layer):
    """Dict-or-tensor plumbing, rank-3 support and the training switch."""

    random = True
    cast_first = True  # False: `transform` takes any dtype and casts itself

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.supports_jit = True
        if self.random:
            self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, data, training=True):
        images, packed = _unpack(data)
        if self.random and not training:
            return data
        images = ops.convert_to_tensor(images)
        if self.cast_first:
            images = self._to_float(images)
        single = len(images.shape) == 3
        if single:
            images = ops.expand_dims(images, 0)
        images = self.transform(images)
        if single:
            images = ops.squeeze(images, 0)
        return _repack(images, packed)

    def _to_float(self, images):
        if keras.backend.standardize_dtype(images.dtype).startswith("float"):
            return images
        return ops.cast(images, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        if self.random:
            config["seed"] = self.seed
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomPadCrop(_ImageLayer):
    """Pads each image with `padding` zero pixels per side and crops a random
    window of the original size, i.e. a random integer shift by at most
    `padding` pixels with zero fill; each image gets its own offset. With
    `flip`, each image is also mirrored left-right with probability 1/2, in
    the same gather.

    Args:
        padding: pixels per side (>= 0); 4 for 32x32 CIFAR images.
        flip: also a random horizontal flip.
        seed: integer seed of the layer's `SeedGenerator`.
    """

    cast_first = False  # crop uint8 pixels (4x less memory traffic), then cast

    def __init__(self, padding=4, flip=False, seed=None, **kwargs):
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise bad_option("padding", padding, "an integer >= 0 (pixels per side)")
        if flip not in (True, False):
            raise bad_option("flip", flip, "True or False")
        super().__init__(seed=seed, **kwargs)
        self.padding = padding
        self.flip = bool(flip)

    def transform(self, images):
        p = self.padding
        batch = ops.shape(images)[0]
        height, width, channels = images.shape[1], images.shape[2], images.shape[3]
        offsets = keras.random.randint((2, batch), 0, 2 * p + 1, seed=self.seed_generator,
                                       dtype="int32")
        # Source row / column of every output pixel, then one gather of pixels
        # from the flattened batch plus one zero pixel, which every output
        # pixel outside the source image reads: no padded copy, cheap on every
        # backend, and fused with the rest of the stack under XLA.
        rows = offsets[0][:, None] + ops.arange(height, dtype="int32")[None, :] - p  # (N, H)
        across = ops.arange(width, dtype="int32")[None, :]
        if self.flip:
            mirror = keras.random.randint((batch, 1), 0, 2, seed=self.seed_generator,
                                          dtype="int32")
            across = across + mirror * (width - 1 - 2 * across)
        cols = offsets[1][:, None] + across - p                                  # (N, W)
        inside = (((rows >= 0) & (rows < height))[:, :, None]
                  & ((cols >= 0) & (cols < width))[:, None, :])                   # (N, H, W)
        base = ops.arange(batch, dtype="int32")[:, None, None] * (height * width)
        index = base + rows[:, :, None] * width + cols[:, None, :]
        index = ops.where(inside, index, batch * height * width)
        flat = ops.concatenate([ops.reshape(images, (-1, channels)),
                                ops.zeros((1, channels), images.dtype)], axis=0)
        pixels = ops.take(flat, ops.reshape(index, (-1,)), axis=0)
        pixels = ops.reshape(pixels, (batch, height, width, channels))
        return self._to_float(pixels)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "flip": self.flip}


def pca_lighting_stats(images, max_images=PCA_SAMPLE_IMAGES, seed=0):
    """Eigenvalues and eigenvectors of the per-pixel channel covariance.

    Args:
        images: training images (N, H, W, C), uint8 pixel values; the
            statistics are those of `images / 255`, as in
            `augment.datasets.channel_stats` (the paper's eigenvalues are on
            that scale: about 0.2 for the first RGB axis of natural images).
        max_images: estimate from a seeded subset of at most this many images.
        seed: seed of the subset.

    Returns:
        (eigenvalues (C,), eigenvectors (C, C) with one eigenvector per
        column), as float lists, ready for `PCALighting`.
    """
    images = np.asarray(images)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"pca_lighting_stats needs images (N, H, W, C); got shape {images.shape}")
    if len(images) > max_images:
        images = images[np.random.default_rng(seed).choice(len(images), max_images, replace=False)]
    pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    cov = np.atleast_2d(np.cov(pixels, rowvar=False))
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    return np.maximum(eigenvalues, 0.0).tolist(), eigenvectors.tolist()


@keras.saving.register_keras_serializable(package=PACKAGE)
class PCALighting(_ImageLayer):
    """AlexNet's colour augmentation (Krizhevsky et al. 2012, section 4.1).

    Adds `sum_i alpha_i * lambda_i * p_i` to every pixel of an image, where
    `p_i, lambda_i` are the eigenvectors and eigenvalues of the 3x3 RGB
    covariance of the training set (`pca_lighting_stats`) and
    `alpha_i ~ N(0, std)` is drawn once per image. Works for any channel count.
    The statistics are those of pixel values in [0, 1]; `scale` maps them to
    the input's units (255 for pixel values in [0, 255], as here).

    Args:
        eigenvalues: (C,) variances along the principal axes of `x / 255`.
        eigenvectors: (C, C), one unit eigenvector per column.
        std: standard deviation of alpha; 0.1 in the paper.
        scale: input value of a pixel at 1.0: 255 for [0, 255] inputs.
        seed: integer seed of the layer's `SeedGenerator`.
    """

    def __init__(self, eigenvalues, eigenvectors, std=0.1, scale=255.0, seed=None, **kwargs):
        values = np.asarray(eigenvalues, np.float64)
        vectors = np.asarray(eigenvectors, np.float64)
        if values.ndim != 1 or vectors.shape != (len(values), len(values)) or not (
                np.all(np.isfinite(values)) and np.all(values >= 0)):
            raise bad_option("eigenvalues/eigenvectors", (values.shape, vectors.shape),
                             "C >= 0 eigenvalues and a (C, C) matrix of eigenvectors")
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not 0 <= std < 10:
            raise bad_option("std", std, "a number in [0, 10) (alpha ~ N(0, std); 0.1 in AlexNet)")
        super().__init__(seed=seed, **kwargs)
        self.eigenvalues = values.tolist()
        self.eigenvectors = vectors.tolist()
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise bad_option("scale", scale, "a number > 0 (255 for pixel values in [0, 255])")
        self.std, self.scale = float(std), float(scale)
        # Column i of `basis` is scale * lambda_i * p_i: noise = alpha @ basis.T.
        self._basis = (scale * vectors * values[None, :]).astype(np.float32)

    def transform(self, images):
        batch = ops.shape(images)[0]
        channels = len(self.eigenvalues)
        alpha = keras.random.normal((batch, channels), stddev=self.std, seed=self.seed_generator,
                                    dtype=images.dtype)
        basis = ops.convert_to_tensor(self._basis, dtype=images.dtype)
        delta = ops.matmul(alpha, ops.transpose(basis))
        # Broadcast explicitly: TensorFlow's CPU kernels are slow at adding a
        # (N, 1, 1, C) tensor to (N, H, W, C).
        return images + ops.broadcast_to(delta[:, None, None, :], ops.shape(images))

    def get_config(self):
        return {**super().get_config(), "eigenvalues": self.eigenvalues,
                "eigenvectors": self.eigenvectors, "std": self.std, "scale": self.scale}
