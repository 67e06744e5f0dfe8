"""Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks").

One scalar T > 0 rescales the log-probabilities of a trained classifier, or of an
ensemble's combined probabilities: p_T = softmax(log p / T). T > 1 softens
overconfident predictions, T < 1 sharpens underconfident ones; the predicted class
never changes, so accuracy stays the same. T is fitted on held-out data by
minimizing the NLL, which is convex in 1/T, so a bracketing search finds the
optimum; the model then carries T in a `TemperatureScaling` layer, so `.keras`
files and exported SavedModels predict calibrated probabilities.
"""

import math

import keras
import numpy as np
from keras import ops

from ensembles import metrics
from zoo import resolve
from zoo.contract import contract_of, model_input_shape

PACKAGE = "ensembles"
LOG_INVERSE_T_RANGE = (-7.0, 7.0)  # 1/T searched in [e^-7, e^7], T from 0.0009 to 1100


def check_temperature(temperature, option="temperature"):
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not (
            math.isfinite(temperature) and temperature > 0):
        raise resolve.bad_option(option, temperature, "a number > 0")
    return float(temperature)


def apply_temperature(probs, temperature):
    """softmax(log p / T) of probabilities `probs` (N, C), in numpy."""
    temperature = check_temperature(temperature)
    logits = np.log(np.clip(np.asarray(probs, np.float64), metrics.EPS, 1.0)) / temperature
    logits -= logits.max(-1, keepdims=True)
    scaled = np.exp(logits)
    return (scaled / scaled.sum(-1, keepdims=True)).astype(np.float32)


def fit_temperature(probs, labels, iterations=80):
    """The temperature minimizing the NLL of `probs` on `labels` (golden-section
    search on log(1/T), where the NLL is unimodal)."""
    probs, labels = metrics._as_arrays(probs, labels)

    def loss(log_inverse_t):
        return metrics.nll(apply_temperature(probs, math.exp(-log_inverse_t)), labels)

    low, high = LOG_INVERSE_T_RANGE
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = loss(a), loss(b)
    for _ in range(iterations):
        if fa < fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = loss(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = loss(b)
    return float(math.exp(-(low + high) / 2.0))


@keras.saving.register_keras_serializable(package=PACKAGE)
class TemperatureScaling(keras.layers.Layer):
    """Class probabilities in, temperature-scaled probabilities out.

    Args:
        temperature: T > 0 (1 leaves the probabilities as they are).
    """

    def __init__(self, temperature=1.0, **kwargs):
        super().__init__(**kwargs)
        self.temperature = check_temperature(temperature)

    def call(self, probs):
        probs = ops.cast(probs, "float32")
        logits = ops.log(ops.clip(probs, metrics.EPS, 1.0)) / self.temperature
        return ops.softmax(logits, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


def calibrated(model, temperature, name=None):
    """`model` followed by `TemperatureScaling(temperature)`, as one functional model
    taking the model's input (zoo models, ensembles and TTA wrappers alike)."""
    shape = model_input_shape(model, "model")
    if contract_of(model) is not None:  # any size: the model fits it by its contract
        shape = (None, None, shape[-1])
    inputs = keras.Input(shape, name="images")
    outputs = TemperatureScaling(temperature, name="temperature_scaling")(
        model(inputs, training=False))
    return keras.Model(inputs, outputs, name=name or f"{model.name}_calibrated")


def temperature_of(model):
    """The temperature a model from `calibrated` carries (None for other models)."""
    for layer in getattr(model, "layers", []):
        if isinstance(layer, TemperatureScaling):
            return layer.temperature
    return None
