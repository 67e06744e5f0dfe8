"""A learnable random dataset of any shape, for tests and timing."""

import numpy as np

from augment.readers import base
from zoo.resolve import bad_option


def synthetic(data_dir, *, seed=0, image_shape=(32, 32, 3), num_classes=10,
                    synthetic_size=(512, 128), **options):
    """Class templates (smooth random patterns) plus Gaussian noise."""
    shape = tuple(image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise bad_option("image_shape", image_shape, "(height, width, channels), all > 0")
    if num_classes < 1:
        raise bad_option("num_classes", num_classes, "an integer >= 1")
    if len(synthetic_size) != 2 or min(synthetic_size) < 1:
        raise bad_option("synthetic_size", synthetic_size, "two positive counts (train, test)")
    height, width, channels = shape
    grid = 4  # templates vary on a 4x4 grid, upsampled to the image size
    coarse = np.random.default_rng([seed, 0]).normal(size=(num_classes, grid, grid, channels))
    rows = np.arange(height) * grid // height
    cols = np.arange(width) * grid // width
    templates = coarse[:, rows][:, :, cols]  # (classes, H, W, C)

    def draw(count, stream):
        rng = np.random.default_rng([seed, stream])
        y = rng.permutation(np.arange(count) % num_classes)
        noise = rng.normal(size=(count, height, width, channels)).astype(np.float32)
        x = 128.0 + 40.0 * templates[y] + 30.0 * noise  # pixel units
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), y

    x_train, y_train = draw(int(synthetic_size[0]), 1)
    x_test, y_test = draw(int(synthetic_size[1]), 2)
    return base.make("synthetic", x_train, y_train, x_test, y_test, num_classes, "synthetic")
