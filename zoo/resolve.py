"""Resolvers for the options every zoo model shares.

Names come in as strings (JSON-able, so they live in `get_config`) and are
resolved here, once, into Keras objects. Every bad value raises a `ValueError`
that names the option, the value received and what is accepted.

Defaults and their sources:
- He et al. 2015, "Delving Deep into Rectifiers": he_normal init for ReLU nets,
  PReLU slopes initialized at 0.25.
- Glorot & Bengio 2010: glorot ("xavier") init for tanh/sigmoid nets.
- Goodfellow et al. 2013, "Maxout Networks": k = 2 linear pieces.
"""

import contextlib
import math

import keras

ACTIVATIONS = (
    "relu", "leaky_relu", "prelu", "elu", "selu", "gelu", "tanh", "sigmoid", "maxout",
)
# Spellings users type for the same initializer, mapped to the Keras name.
INITIALIZER_ALIASES = {
    "glorot": "glorot_uniform",
    "xavier": "glorot_uniform",
    "xavier_uniform": "glorot_uniform",
    "xavier_normal": "glorot_normal",
    "he": "he_normal",
    "kaiming": "he_normal",
    "kaiming_normal": "he_normal",
    "kaiming_uniform": "he_uniform",
    "lecun": "lecun_normal",
    "small": "small_normal",
    "small_random": "small_normal",
}
INITIALIZERS = (
    "glorot_uniform", "glorot_normal", "he_uniform", "he_normal",
    "lecun_uniform", "lecun_normal", "small_normal",
)
SMALL_NORMAL_STDDEV = 0.01  # the course's failing baseline: W = 0.01 * randn
REGULARIZERS = ("l1", "l2", "l1_l2")
DEFAULT_REGULARIZER_STRENGTH = 1e-4


def bad_option(option, value, accepted):
    """The one error format for a bad option: option, value received, what is accepted."""
    return ValueError(f"{option}={value!r} is not accepted; expected {accepted}")


def check_rate(option, value):
    """A probability-like rate in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise bad_option(option, value, "a number in [0, 1)")
    return float(value)


def check_positive_int(option, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise bad_option(option, value, f"an integer >= {minimum}")
    return value


def check_number(option, value, low=None, high=None, low_open=False, high_open=False):
    """A finite number within [low, high] (open ends with `low_open`/`high_open`)."""
    bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
    bad = bad or (low is not None and (value < low or (low_open and value == low)))
    bad = bad or (high is not None and (value > high or (high_open and value == high)))
    if bad:
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if low_open else '>='} {low:g}")
        if high is not None:
            bounds.append(f"{'<' if high_open else '<='} {high:g}")
        raise bad_option(option, value, "a number" + (" " + " and ".join(bounds) if bounds else ""))
    return value


def check_int_list(option, value, minimum=1, length=None):
    """A non-empty list or tuple of integers >= `minimum` (of `length` items when given)."""
    accepted = (f"{length} " if length else "a non-empty list of ") + f"integers >= {minimum}"
    if not isinstance(value, (list, tuple)) or not value or (length and len(value) != length):
        raise bad_option(option, value, accepted)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in value):
        raise bad_option(option, value, accepted)
    return list(value)


def check_choice(option, value, choices):
    if value not in choices:
        raise bad_option(option, value, "one of " + ", ".join(map(str, choices)))
    return value


class InputTooSmall(ValueError):
    """An input shape below a model's minimum; `min_size` is the smallest side it takes."""

    def __init__(self, message, min_size):
        super().__init__(message)
        self.min_size = min_size


class InputShapeProbe(Exception):
    """Raised by `check_input_shape` inside `probing_input_shape`: a model's
    input shape, known before any layer is built."""

    def __init__(self, shape):
        super().__init__(f"input shape {shape}")
        self.shape = shape


_probing = [False]


@contextlib.contextmanager
def probing_input_shape():
    """Within the block, constructing a model stops at its input shape check
    with `InputShapeProbe` (`zoo.registry.default_input_shape`)."""
    _probing[0] = True
    try:
        yield
    finally:
        _probing[0] = False


def check_input_shape(input_shape, min_size, model_name):
    """(height, width, channels) with both sides at least `min_size`."""
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
    if (
        shape is None
        or len(shape) != 3
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        raise bad_option("input_shape", input_shape,
                         "(height, width, channels) with positive integers")
    if min(shape[:2]) < min_size:
        raise InputTooSmall(str(bad_option(
            "input_shape", input_shape,
            f"height and width >= {min_size}: {model_name} downsamples a smaller input to nothing",
        )), min_size)
    if _probing[0]:
        raise InputShapeProbe(shape)
    return shape


def canonical_activation(name):
    """Normalize an activation spec to a name stored in the config."""
    if not isinstance(name, str):
        raise bad_option("activation", name, _activation_choices())
    key = name.lower().replace("-", "_")
    if key in {"leakyrelu", "lrelu"}:
        key = "leaky_relu"
    if key in ACTIVATIONS:
        return key
    try:
        keras.activations.get(key)
    except (ValueError, TypeError):
        raise bad_option("activation", name, _activation_choices()) from None
    return key


def _activation_choices():
    return "one of " + ", ".join(ACTIVATIONS) + ", or a Keras activation name"


def canonical_initializer(name):
    """Normalize an initializer spec to a name stored in the config."""
    if not isinstance(name, str):
        raise bad_option("kernel_initializer", name, _initializer_choices())
    key = INITIALIZER_ALIASES.get(name.lower(), name.lower())
    if key in INITIALIZERS:
        return key
    try:
        keras.initializers.get(key)
    except (ValueError, TypeError):
        raise bad_option("kernel_initializer", name, _initializer_choices()) from None
    return key


def _initializer_choices():
    aliases = ", ".join(sorted(INITIALIZER_ALIASES))
    return ("one of " + ", ".join(INITIALIZERS) + f" (aliases: {aliases}), or a Keras "
            "initializer name")


def make_initializer(name):
    """A fresh initializer object for one layer."""
    if name == "small_normal":
        return keras.initializers.RandomNormal(mean=0.0, stddev=SMALL_NORMAL_STDDEV)
    return keras.initializers.get(name)


def canonical_regularizer(spec):
    """Normalize a kernel regularizer spec to None or {"l1": a, "l2": b}.

    Accepts None, "l1", "l2", "l1_l2" (strength 1e-4 each), "l2:5e-4",
    "l1_l2:1e-5,1e-4", or a dict with keys l1 and/or l2.
    """
    accepted = (
        "None, 'l1', 'l2', 'l1_l2', a strength as in 'l2:5e-4' or 'l1_l2:1e-5,1e-4', "
        "or a dict like {'l1': 0.0, 'l2': 5e-4} with non-negative strengths"
    )
    if spec is None:
        return None
    if isinstance(spec, str):
        kind, _, strengths = spec.lower().partition(":")
        if kind not in REGULARIZERS:
            raise bad_option("kernel_regularizer", spec, accepted)
        try:
            values = [float(s) for s in strengths.split(",")] if strengths else []
        except ValueError:
            raise bad_option("kernel_regularizer", spec, accepted) from None
        if kind == "l1_l2":
            values = values or [DEFAULT_REGULARIZER_STRENGTH] * 2
            if len(values) != 2:
                raise bad_option("kernel_regularizer", spec, accepted)
            spec = {"l1": values[0], "l2": values[1]}
        else:
            if len(values) > 1:
                raise bad_option("kernel_regularizer", spec, accepted)
            spec = {kind: values[0] if values else DEFAULT_REGULARIZER_STRENGTH}
    if not isinstance(spec, dict) or not set(spec) <= {"l1", "l2"}:
        raise bad_option("kernel_regularizer", spec, accepted)
    out = {}
    for key in ("l1", "l2"):
        value = spec.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value >= 0
        ):
            raise bad_option("kernel_regularizer", spec, accepted)
        out[key] = float(value)
    return out if (out["l1"] or out["l2"]) else None


def make_regularizer(spec):
    if spec is None:
        return None
    return keras.regularizers.L1L2(l1=spec["l1"], l2=spec["l2"])
