"""Test-time augmentation: average a model's softmax outputs over views.

Views (Krizhevsky et al. 2012, section 4.1, "ten patches"; the CIFAR form pads
and crops at the training crop's extreme positions):

- ``identity``: the image;
- ``flip``: the image and its horizontal mirror;
- ``5crop``: pad by `padding` pixels per side and take the four corner crops
  and the centre crop at the original size (the centre crop is the image);
- ``10crop``: the five crops and their mirrors.

`TTAModel` wraps a model into one inference graph that round-trips through
`.keras`, so an exported model can carry its TTA. Its outputs are the mean of
the wrapped model's outputs (probabilities for the zoo's softmax heads). It
works on raw pixel values at the size the model declares
(`zoo.contract.model_input_shape`; other sizes are fitted to it first, by the
model's contract), the crops padded with black, as the training crop pads.
"""

import keras
from keras import ops

from augment import layers
from zoo.contract import FitToSize, contract_of, model_input_shape
from zoo.resolve import bad_option

VIEWS = ("identity", "flip", "5crop", "10crop")
NUM_VIEWS = {"identity": 1, "flip": 2, "5crop": 5, "10crop": 10}


def check_views(views):
    if views not in VIEWS:
        raise bad_option("tta", views, f"one of {', '.join(VIEWS)}")
    return views


def evaluation_settings(crop_padding=0):
    """`padding` of the TTA used at evaluation (and export): half the training
    crop padding, 2 pixels when training used no crop (on MNIST the extreme
    corners of the training crop were worse views than plain evaluation).

    Args:
        crop_padding: the training crop padding in pixels (0: none).
    """
    return {"padding": max(1, (crop_padding or 4) // 2)}


def make_views(images, views="flip", padding=2, fill_value=0.0):
    """The list of view tensors of a batch (N, H, W, C) for `views`.

    Args:
        images: a float batch, channels last.
        views: one of `VIEWS`.
        padding: crop offset in pixels for 5crop / 10crop.
        fill_value: value of the padded border, a number or one per channel
            (0: black pixels, as the training crop pads).
    """
    check_views(views)
    out = [images]
    if views in ("5crop", "10crop"):
        p = padding
        height, width = images.shape[1], images.shape[2]
        fill = ops.reshape(ops.convert_to_tensor(fill_value, dtype=images.dtype), (1, 1, 1, -1))
        padded = ops.pad(images - fill, [[0, 0], [p, p], [p, p], [0, 0]]) + fill
        corners = [(0, 0), (0, 2 * p), (2 * p, 0), (2 * p, 2 * p)]
        out += [padded[:, r:r + height, c:c + width, :] for r, c in corners]
    if views in ("flip", "10crop"):
        out += [ops.flip(view, axis=2) for view in out]
    return out


@keras.saving.register_keras_serializable(package=layers.PACKAGE)
class TTAModel(keras.Model):
    """A model evaluated over test-time views, outputs averaged.

    Args:
        model: the wrapped model (raw pixel values in, probabilities out; a
            `zoo.contract.Classifier` or an ensemble of them).
        views: one of `VIEWS`.
        padding: crop offset of 5crop / 10crop in pixels.
        fill_value: border value of the crops, a number or one per channel.
    """

    def __init__(self, model, views="flip", padding=2, fill_value=0.0, **kwargs):
        check_views(views)
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 1:
            raise bad_option("tta_padding", padding, "an integer >= 1 (pixels)")
        super().__init__(**kwargs)
        self.model = model
        self.views = views
        self.padding = padding
        self.fill_value = [float(v) for v in fill_value] if isinstance(
            fill_value, (list, tuple)) else float(fill_value)
        contract = contract_of(model)
        height, width, channels = model_input_shape(model, "model")
        # The views are cut at the size the model declares; another size is
        # fitted to it first, as the model's contract fits images.
        self.fit_to_size = FitToSize(height, width, channels,
                                     contract.fit if contract else "pad", name="tta_fit")

    def call(self, inputs, training=False):
        inputs = self.fit_to_size(inputs)
        views = make_views(inputs, self.views, self.padding, self.fill_value)
        batch = ops.shape(inputs)[0]
        # One forward pass over all views stacked along the batch axis.
        outputs = self.model(ops.concatenate(views, axis=0), training=False)
        outputs = ops.reshape(outputs, (len(views), batch) + tuple(outputs.shape[1:]))
        return ops.mean(outputs, axis=0)

    def compute_output_shape(self, input_shape):
        return self.model.compute_output_shape(
            (input_shape[0], *model_input_shape(self.model, "model")))

    def get_config(self):
        return {**super().get_config(), "model": keras.saving.serialize_keras_object(self.model),
                "views": self.views, "padding": self.padding, "fill_value": self.fill_value}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(config.pop("model"))
        return cls(model, **config)


def evaluate_tta(model, images, labels, views="flip", padding=2, fill_value=0.0, batch_size=256):
    """Accuracy of `model` over `views` on raw `images` with one-hot or integer
    `labels`; returns (accuracy, probabilities)."""
    import numpy as np

    tta = TTAModel(model, views, padding, fill_value)
    probs = np.asarray(tta.predict(images, batch_size=batch_size, verbose=0))
    labels = np.asarray(labels)
    truth = labels.argmax(axis=-1) if labels.ndim == 2 else labels
    return float(np.mean(probs.argmax(axis=-1) == truth)), probs
