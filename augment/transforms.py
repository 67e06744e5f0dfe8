"""The ImageNet papers' train and evaluation transforms, on encoded images in tf.data.

Every transform chooses a window of the image (its crop), decodes only that
window when the image is a JPEG (`tf.io.decode_and_crop_jpeg`: the rest of the
picture is never decoded), resizes it to the crop size (bilinear, antialiased)
and, in training, flips it left-right with probability 1/2. Sizes are the
papers' for 224x224 crops and scale with `size` (a 64 crop of the VGG preset
jitters the short side in [73, 146]).

Train (`TRAIN`, `--train-transform`):
- ``alexnet``: the short side scaled to 256, a random 224 crop (Krizhevsky et
  al. 2012, sec. 4.1).
- ``vgg``: scale jittering, the short side S ~ U[256, 512], a random 224 crop
  (Simonyan & Zisserman 2015, sec. 3.1).
- ``resnet``: S ~ U[256, 480], a random 224 crop (He et al. 2016, sec. 3.4).
- ``inception``: a crop of 8-100% of the area at an aspect ratio in [3/4, 4/3]
  (Szegedy et al. 2015, sec. 6; torchvision's RandomResizedCrop).
- ``resize``: the whole image squashed to the crop size (small images: digits).

Evaluation (`EVAL`, `--eval-transform`):
- ``center``: the central 224/256 of the short side, resized (the 256-resize +
  224 centre crop of the papers); the same rule as `zoo.contract.FitToSize`'s
  "crop", which a model trained this way applies to any image it is given.
- ``resize``: the whole image squashed (`FitToSize`'s "resize").
"""

from zoo.contract import CROP_FRACTION

# short-side range S (pixels, for 224 crops) of the scale-jittering presets
JITTER = {"alexnet": (256, 256), "vgg": (256, 512), "resnet": (256, 480)}
TRAIN = ("alexnet", "vgg", "resnet", "inception", "resize")
EVAL = ("center", "resize")
# What each eval transform is, as the fit rule of the model's contract.
CONTRACT_FIT = {"center": "crop", "resize": "resize"}
REFERENCE_CROP = 224
INCEPTION_AREA = (0.08, 1.0)
INCEPTION_ASPECT = (3 / 4, 4 / 3)


def transform_image(contents, size, preset, seed=None, flip=False):
    """One encoded image (JPEG, PNG, BMP, GIF, WebP; any size and mode) ->
    uint8 (size, size, 3): the window `preset` chooses (random with the
    stateless `seed`, shape (2,) int64, in training), decoded, resized,
    optionally flipped with the second half of the seed."""
    import tensorflow as tf

    seeds = None if seed is None else tf.random.experimental.stateless_split(seed, 3)

    def jpeg():
        shape = tf.io.extract_jpeg_shape(contents)
        return tf.io.decode_and_crop_jpeg(contents, window(shape, size, preset, seeds),
                                          channels=3)

    def other():
        image = tf.io.decode_image(contents, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        y, x, h, w = tf.unstack(window(tf.shape(image), size, preset, seeds))
        return image[y:y + h, x:x + w]

    crop = tf.cond(tf.io.is_jpeg(contents), jpeg, other)
    image = tf.image.resize(crop, (size, size), antialias=True)
    image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
    if flip and seeds is not None:
        image = tf.image.stateless_random_flip_left_right(image, seeds[2])
    return image


def window(shape, size, preset, seeds=None):
    """[y, x, height, width] (int32) of the window of an image of `shape`."""
    import tensorflow as tf

    height, width = tf.cast(shape[0], tf.int32), tf.cast(shape[1], tf.int32)
    short = tf.minimum(height, width)
    if preset == "resize":
        return tf.stack([0, 0, height, width])
    if preset == "center":
        side = tf.clip_by_value(tf.cast(tf.round(CROP_FRACTION * tf.cast(short, tf.float32)),
                                        tf.int32), 1, short)
        return tf.stack([(height - side) // 2, (width - side) // 2, side, side])
    if preset == "inception":
        begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.stack([height, width, 3]), tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=seeds[0],
            min_object_covered=0.0, aspect_ratio_range=INCEPTION_ASPECT,
            area_range=INCEPTION_AREA, max_attempts=10, use_image_if_no_bounding_boxes=True)
        return tf.stack([begin[0], begin[1], extent[0], extent[1]])
    low, high = JITTER[preset]
    scaled = tf.random.stateless_uniform([], seeds[0], float(low), float(high) + 1e-6)
    side = tf.cast(tf.round(tf.cast(short, tf.float32) * REFERENCE_CROP / scaled), tf.int32)
    side = tf.clip_by_value(side, 1, short)
    offsets = tf.random.stateless_uniform([2], seeds[1], 0.0, 1.0)
    y = tf.cast(offsets[0] * tf.cast(height - side + 1, tf.float32), tf.int32)
    x = tf.cast(offsets[1] * tf.cast(width - side + 1, tf.float32), tf.int32)
    return tf.stack([tf.minimum(y, height - side), tf.minimum(x, width - side), side, side])
