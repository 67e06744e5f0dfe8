"""One Keras model out of several: soft/hard voting, weighted and geometric means.

`EnsembleModel(members, method)` is a `keras.Model` whose output combines its
members' class probabilities, so it predicts, evaluates, saves to `.keras` and
exports like any single model. Its `fit` trains the members one after another,
each with its own optimizer (an independent-model ensemble); with
`method="weighted"` the combination weights are then fitted on the validation
data.
"""

import keras
import numpy as np
from keras import ops

from ensembles import metrics
from zoo import resolve
from zoo.contract import contract_of, model_input_shape

METHODS = ("soft", "hard", "weighted", "geometric")


def _output_shape(member):
    """The inference output shape (GoogLeNet's auxiliary heads exist only in training)."""
    shape = (None, *model_input_shape(member, "members"))
    spec = member.compute_output_spec(keras.KerasTensor(shape), training=False)
    if not hasattr(spec, "shape"):
        raise resolve.bad_option("members", member.name,
                                 "models with a single output (class probabilities)")
    return tuple(spec.shape)


def check_members(members):
    """At least one built model; all with the same classes. Members that carry
    an input contract (`zoo.contract.Classifier`) may take any input (each fits
    the images to its own size and normalization); their class names must
    agree. Bare networks must share their input shape."""
    members = list(members) if isinstance(members, (list, tuple)) else members
    if not isinstance(members, list) or not members:
        raise resolve.bad_option("members", members, "a non-empty list of Keras models (M >= 1)")
    for member in members:
        if not isinstance(member, keras.Model):
            raise resolve.bad_option("members", type(member).__name__, "Keras models")
    outputs = [(m.name, _output_shape(m)) for m in members]
    if len({shape for _, shape in outputs}) > 1:
        raise resolve.bad_option("members", outputs, "models with the same output shape")
    contracts = [contract_of(m) for m in members]
    if all(c is not None for c in contracts):
        named = [(m.name, c.class_names) for m, c in zip(members, contracts)
                 if c.class_names is not None]
        for name, classes in named[1:]:
            if classes != named[0][1]:
                raise resolve.bad_option(
                    "members", f"{named[0][0]} with classes {list(named[0][1])} and {name} with "
                    f"classes {list(classes)}", "models with the same class list")
        return members
    inputs = [(m.name, model_input_shape(m)) for m in members]
    if len({shape for _, shape in inputs}) > 1:
        raise resolve.bad_option("members", inputs, "models with the same input shape (or models "
                                 "that carry their input contract, zoo.contract.Classifier)")
    return members


def fit_combination_weights(member_probs, labels, steps=500, step_size=1.0):
    """Weights on the simplex that minimize the validation cross-entropy of the
    weighted average of member probabilities (exponentiated gradient descent).

    Args:
        member_probs: (M, N, C) member probabilities.
        labels: (N,) class indices or (N, C) one-hot / soft labels.
    """
    probs = np.asarray(member_probs, np.float64)
    labels = np.asarray(labels)
    target = labels if labels.ndim == 2 else np.eye(probs.shape[-1])[labels.astype(int)]
    weights = np.full(len(probs), 1.0 / len(probs))
    for _ in range(steps):
        mixed = np.einsum("m,mnc->nc", weights, probs)
        # d/dw_m of mean_n -sum_c t_nc log(mixed_nc)
        grad = -np.einsum("nc,mnc->m", target / np.maximum(mixed, 1e-12), probs) / len(target)
        weights = weights * np.exp(-step_size * (grad - grad.min()))
        weights /= weights.sum()
    return weights


def disagreement(member_probs):
    """Mean over member pairs of the fraction of inputs whose top-1 classes differ."""
    predicted = np.argmax(np.asarray(member_probs), axis=-1)
    m = len(predicted)
    if m < 2:
        return 0.0
    pairs = [(i, j) for i in range(m) for j in range(i + 1, m)]
    return float(np.mean([np.mean(predicted[i] != predicted[j]) for i, j in pairs]))


@keras.saving.register_keras_serializable(package="ensembles")
class EnsembleModel(keras.Model):
    """Combines member models' class probabilities into one output.

    Args:
        members: Keras models whose outputs are class probabilities (the zoo's
            default softmax): `zoo.contract.Classifier`s with the same classes
            (each fits the input to its own size and normalization), or bare
            networks with the same input shape.
        method: "soft" (average probabilities), "hard" (majority vote: the
            share of votes per class), "weighted" (weights fitted on validation
            data, `fit_weights`) or "geometric" (normalized geometric mean).
        weights: combination weights, one per member (default: uniform).
    """

    def __init__(self, members, method="soft", weights=None, **kwargs):
        super().__init__(**kwargs)
        self.members = check_members(members)
        self.method = resolve.check_choice("method", method, METHODS)
        m = len(self.members)
        weights = np.full(m, 1.0 / m) if weights is None else np.asarray(weights, np.float64)
        if weights.shape != (m,) or np.any(weights < 0) or not weights.sum() > 0:
            raise resolve.bad_option("weights", np.asarray(weights).tolist(),
                                     f"{m} non-negative numbers with a positive sum")
        self.combination = self.add_weight(
            shape=(m,), name="combination_weights", trainable=False,
            initializer=keras.initializers.Constant((weights / weights.sum()).tolist()))
        self.num_classes = _output_shape(self.members[0])[-1]

    def call(self, inputs, training=False):
        # Members always run in inference mode: the ensemble combines trained
        # models; `fit` trains each member on its own.
        return self.combine(
            ops.stack([member(inputs, training=False) for member in self.members], axis=0))

    def combine(self, probs):
        """(M, N, C) member probabilities -> (N, C) ensemble output."""
        probs = ops.cast(probs, "float32")
        weights = ops.reshape(ops.cast(self.combination, "float32"), (-1, 1, 1))
        if self.method == "hard":
            votes = ops.one_hot(ops.argmax(probs, axis=-1), self.num_classes, dtype="float32")
            return ops.sum(weights * votes, axis=0)
        if self.method == "geometric":
            log_probs = ops.sum(weights * ops.log(ops.maximum(probs, 1e-12)), axis=0)
            return ops.softmax(log_probs, axis=-1)
        return ops.sum(weights * probs, axis=0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    # -- training -----------------------------------------------------------------

    def compile(self, optimizer=None, loss="categorical_crossentropy", metrics=None, **kwargs):
        """Compiles the ensemble (for `evaluate`) and each member with its own
        copy of `optimizer` (for `fit`)."""
        optimizer = keras.optimizers.get(optimizer)
        if optimizer is not None:  # None: a loaded ensemble, compiled for evaluate only
            for member in self.members:
                member.compile(optimizer=optimizer.__class__.from_config(optimizer.get_config()),
                               loss=loss, metrics=metrics, **kwargs)
        # The ensemble itself is never trained as a whole: no optimizer of its own.
        super().compile(optimizer=None, loss=loss, metrics=metrics, **kwargs)

    def compile_from_config(self, config):
        # The saved compile arguments go through the compile() above (Keras'
        # default skips a custom compile()).
        self.compile(**keras.saving.deserialize_keras_object(config))

    def fit(self, x=None, y=None, callbacks=None, validation_data=None, **kwargs):
        """Trains each member in turn with `member.fit(...)` (same arguments).

        `callbacks` is a list shared by the members or a function
        `member_index -> list`, for callbacks that keep state across a fit
        (a checkpoint path per member, `SwapEMAWeights`, `SWA`).
        With `method="weighted"` and `validation_data`, the combination
        weights are then fitted on it. Returns one `History` per member.
        """
        histories = []
        for index, member in enumerate(self.members):
            if not member.compiled:
                raise RuntimeError(f"member {index} ({member.name}) is not compiled; call "
                                   "EnsembleModel.compile(...) or compile the members first")
            member_callbacks = callbacks(index) if callable(callbacks) else callbacks
            histories.append(member.fit(x, y, callbacks=member_callbacks,
                                        validation_data=validation_data, **kwargs))
        if self.method == "weighted" and validation_data is not None:
            self.fit_weights(*_split_xy(validation_data))
        return histories

    def member_predictions(self, x, batch_size=256):
        """(M, N, C) probabilities of every member."""
        return np.stack([np.asarray(member.predict(x, batch_size=batch_size, verbose=0))
                         for member in self.members]).astype(np.float32)

    def fit_weights(self, x, y, batch_size=256, member_probs=None):
        """Fits the combination weights on held-out data (`method="weighted"`);
        `member_probs` (M, N, C) stands for the members' predictions on `x`."""
        probs = self.member_predictions(x, batch_size) if member_probs is None else member_probs
        weights = fit_combination_weights(probs, y)
        self.combination.assign(weights.astype("float32"))
        return weights

    def report(self, x, y, batch_size=256, member_probs=None):
        """Per-member and ensemble accuracy, NLL, Brier score and calibration
        errors (`ensembles.metrics.scores`), and the members' disagreement rate;
        `member_probs` (M, N, C) stands for the members' predictions on `x`."""
        labels = np.asarray(y)
        labels = labels.argmax(-1) if labels.ndim == 2 else labels.astype(int)
        probs = self.member_predictions(x, batch_size) if member_probs is None else np.asarray(
            member_probs, np.float32)
        combined = keras.ops.convert_to_numpy(self.combine(probs))
        member_scores = [metrics.scores(p, labels) for p in probs]
        ensemble_scores = metrics.scores(combined, labels)
        return {
            "member_accuracy": [s["accuracy"] for s in member_scores],
            "ensemble_accuracy": ensemble_scores["accuracy"],
            "member_scores": member_scores, "ensemble_scores": ensemble_scores,
            "disagreement": disagreement(probs),
            "weights": [float(w) for w in keras.ops.convert_to_numpy(self.combination)],
        }

    # -- serialization ----------------------------------------------------------

    def get_config(self):
        return {
            "name": self.name,
            "members": [keras.saving.serialize_keras_object(m) for m in self.members],
            "method": self.method,
            "weights": [float(w) for w in keras.ops.convert_to_numpy(self.combination)],
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        members = [keras.saving.deserialize_keras_object(m) for m in config.pop("members")]
        return cls(members, **config)


def _split_xy(data):
    if isinstance(data, (tuple, list)):
        return data[0], data[1]
    raise resolve.bad_option("validation_data", type(data).__name__,
                             "an (x, y) tuple of arrays when method='weighted'")
