"""Shifted test sets: deterministic corruptions of uint8 images at 5 severities.

In the spirit of MNIST-C (Mu & Gilmer 2019) and ImageNet-C (Hendrycks & Dietterich
2019): the clean test split, corrupted, measures how accuracy and calibration
degrade under distribution shift (Ovadia et al. 2019). Every corruption takes uint8
images (N, H, W, C), grayscale or RGB, and returns uint8 images of the same shape;
the same (images, name, severity, seed) always gives the same result, and a higher
severity moves the images further from the clean ones.

Severity parameters (s = 1 .. 5), lengths in pixels of a 28-pixel image (scaled
with the image size):

| corruption | what | s = 1 .. 5 |
| --- | --- | --- |
| rotate | rotation about the centre, random sign | 8, 16, 24, 32, 40 degrees |
| shear | horizontal shear, random sign | 0.1, 0.2, 0.3, 0.4, 0.5 |
| translate | shift in a random direction | 1, 2, 3, 4, 5 pixels per axis |
| gaussian_noise | additive N(0, sigma) | sigma 0.08, 0.12, 0.18, 0.26, 0.38 of the range |
| impulse_noise | salt and pepper | 3, 6, 9, 17, 27% of the pixels |
| blur | Gaussian blur | sigma 0.5, 0.8, 1.1, 1.5, 2.0 pixels |
| contrast | towards the image's mean | contrast 0.6, 0.45, 0.3, 0.2, 0.12 |
| fog | a smooth random brightness field added | 0.2, 0.35, 0.5, 0.65, 0.8 of the range |
"""

import math

import numpy as np

from zoo.resolve import bad_option

CORRUPTIONS = ("rotate", "shear", "translate", "gaussian_noise", "impulse_noise", "blur",
               "contrast", "fog")
SEVERITIES = (1, 2, 3, 4, 5)
PARAMETERS = {
    "rotate": (8, 16, 24, 32, 40),
    "shear": (0.1, 0.2, 0.3, 0.4, 0.5),
    "translate": (1, 2, 3, 4, 5),
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "blur": (0.5, 0.8, 1.1, 1.5, 2.0),
    "contrast": (0.6, 0.45, 0.3, 0.2, 0.12),
    "fog": (0.2, 0.35, 0.5, 0.65, 0.8),
}
REFERENCE_SIZE = 28  # pixel lengths above are for 28-pixel images


def corrupt(images, name, severity, seed=0):
    """`images` (uint8 (N, H, W, C)) with corruption `name` at `severity` (1-5)."""
    if name not in CORRUPTIONS:
        raise bad_option("corruption", name, "one of " + ", ".join(CORRUPTIONS))
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise bad_option("severity", severity, "an integer in 1-5")
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8 or not len(images):
        raise bad_option("images", f"{images.dtype} of shape {images.shape}",
                         "uint8 images shaped (N, H, W, C) with N >= 1")
    rng = np.random.default_rng([seed, CORRUPTIONS.index(name), severity])
    value = PARAMETERS[name][severity - 1]
    scale = images.shape[1] / REFERENCE_SIZE
    x = images.astype(np.float32)
    n = len(x)
    if name == "rotate":
        angle = np.radians(value) * rng.choice([-1.0, 1.0], n)
        cos, sin = np.cos(angle), np.sin(angle)
        out = _affine(x, np.stack([cos, -sin, sin, cos], -1).reshape(n, 2, 2), np.zeros((n, 2)))
    elif name == "shear":
        shear = value * rng.choice([-1.0, 1.0], n)
        matrix = np.tile(np.eye(2), (n, 1, 1))
        matrix[:, 1, 0] = shear  # column (x) moves with the row (y)
        out = _affine(x, matrix, np.zeros((n, 2)))
    elif name == "translate":
        shift = value * scale * rng.choice([-1.0, 1.0], (n, 2))
        out = _affine(x, np.tile(np.eye(2), (n, 1, 1)), shift)
    elif name == "gaussian_noise":
        out = x + rng.normal(0.0, value * 255.0, x.shape)
    elif name == "impulse_noise":
        hit = rng.random(x.shape[:3]) < value
        salt = rng.random(x.shape[:3]) < 0.5
        out = np.where(hit[..., None], np.where(salt, 255.0, 0.0)[..., None], x)
    elif name == "blur":
        out = _gaussian_blur(x, value * scale)
    elif name == "contrast":
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        out = (x - mean) * value + mean
    else:  # fog
        out = x + value * 255.0 * _smooth_field(rng, x.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _affine(x, matrix, shift):
    """Each image resampled (bilinear, zero fill) at matrix @ (p - c) + c - shift:
    the inverse map of rotating / shearing about the centre c, then shifting."""
    n, height, width, _ = x.shape
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float32),
                             np.arange(width, dtype=np.float32), indexing="ij")
    centre = np.array([(height - 1) / 2.0, (width - 1) / 2.0], np.float32)
    points = np.stack([rows - centre[0], cols - centre[1]], -1).reshape(-1, 2)  # (P, 2)
    source = np.einsum("nij,pj->npi", matrix.astype(np.float32), points) + centre
    source -= shift[:, None, :].astype(np.float32)
    return _bilinear(x, source[..., 0], source[..., 1]).reshape(x.shape)


def _bilinear(x, r, c):
    """x sampled at real (row, col) positions (N, P), zero outside the image."""
    n, height, width, channels = x.shape
    r0, c0 = np.floor(r).astype(np.int64), np.floor(c).astype(np.int64)
    dr, dc = (r - r0)[..., None], (c - c0)[..., None]
    flat = x.reshape(n, height * width, channels)
    index = np.arange(n)[:, None]

    def pixel(rr, cc):
        inside = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
        values = flat[index, np.clip(rr, 0, height - 1) * width + np.clip(cc, 0, width - 1)]
        return values * inside[..., None]

    return (pixel(r0, c0) * (1 - dr) * (1 - dc) + pixel(r0, c0 + 1) * (1 - dr) * dc
            + pixel(r0 + 1, c0) * dr * (1 - dc) + pixel(r0 + 1, c0 + 1) * dr * dc)


def _gaussian_blur(x, sigma):
    radius = max(1, int(math.ceil(3 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    for axis in (1, 2):  # separable: rows, then columns, edges reflected
        pad = [(0, 0)] * 4
        pad[axis] = (radius, radius)
        padded = np.pad(x, pad, mode="reflect")
        length = x.shape[axis]
        x = sum(w * np.take(padded, np.arange(k, k + length), axis=axis)
                for k, w in enumerate(kernel))
    return x


def _smooth_field(rng, shape, grid=4):
    """A random field in [0, 1], smooth (bilinear from a grid x grid lattice), one
    per image, shared by the channels."""
    n, height, width, _ = shape
    coarse = rng.random((n, grid + 1, grid + 1, 1)).astype(np.float32)
    rows = np.linspace(0, grid, height)[None, :].repeat(width, 0).T
    cols = np.linspace(0, grid, width)[None, :].repeat(height, 0)
    return _bilinear(coarse, np.broadcast_to(rows.reshape(1, -1), (n, height * width)),
                     np.broadcast_to(cols.reshape(1, -1), (n, height * width))).reshape(
        n, height, width, 1)
