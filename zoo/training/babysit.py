"""Babysitting the learning process: sanity checks and the learning-rate finder.

The workflow of CS231n (Karpathy, "Babysitting the learning process", 2015-2017):
check the initial loss, overfit a tiny subset, find a learning rate, then watch
the training (`zoo.training.monitors`).

- `initial_loss_check`: with regularization off, a softmax classifier at
  initialization should predict nearly uniform probabilities, so its loss is
  about ln(num_classes) (2.30 for 10 classes); turning regularization on must
  raise it.
- `overfit_check`: with regularization off, a healthy model and learning rate
  reach (nearly) 100% training accuracy on 20 to 100 examples within a few
  hundred steps.
- `find_lr`: the LR range test (Smith, "Cyclical Learning Rates for Training
  Neural Networks", 2017): the learning rate grows exponentially from `min_lr`
  to `max_lr` over a few hundred steps while the (smoothed) loss is recorded;
  the suggestion is the LR of the smallest smoothed loss divided by 10.
"""

import dataclasses
import math

import keras

from zoo import resolve
from zoo.training import builder, plots
from zoo.training import data as data_module

# He-initialized zoo models start at 1.05 to 1.35 ln(C): their logits are not
# tiny. A blown-up initialization gives many times ln(C).
INITIAL_LOSS_WARN = 0.5      # warn when |loss / ln(C) - 1| exceeds this
INITIAL_LOSS_FAIL = 5.0      # fail when the loss exceeds this * ln(C), or is not finite
DEFAULT_CHECK_L2 = 1e-3      # L2 strength for the regularization check when the config has none
OVERFIT_TARGET = 0.99        # training accuracy that counts as "overfit"
LR_FINDER_SMOOTHING = 0.9    # exponential smoothing of the recorded loss
LR_FINDER_DIVERGE = 4.0      # stop once the smoothed loss exceeds this multiple of the best
CHECK_IMAGES = 256           # training images the checks use (the initial loss' batch)


class SanityCheckError(ValueError):
    """A sanity check failed; the message says which and what was measured."""


@dataclasses.dataclass
class CheckResult:
    """The outcome of one check: status is "ok", "warn" or "fail"."""

    name: str
    status: str
    message: str
    values: dict

    def line(self):
        return f"[{self.status.upper():4}] {self.name}: {self.message}"


def _no_regularization(config):
    """The config with every regularizer off (every family accepts dropout=0)."""
    return dataclasses.replace(config, l1=0.0, l2=0.0, dropout=0.0, weight_decay=0.0,
                               label_smoothing=0.0)


def _compile(model, config, lr=None, optimizer=None):
    """Compiles with the config's loss and optimizer at a constant learning rate."""
    settings = dict(schedule="constant", warmup_epochs=0.0, lr=lr if lr is not None else config.lr)
    if optimizer:
        settings["optimizer"] = optimizer
    builder.compile_model(model, dataclasses.replace(config, **settings), steps_per_epoch=1)
    return model


def _first_step_loss(model, x, y):
    """The loss of a first training step, before any update: a forward pass in
    training mode (BatchNorm normalizes with the batch's statistics, as in
    training; its moving averages at initialization would not) plus the
    regularization penalties."""
    probs = model(x, training=True)
    if isinstance(probs, (list, tuple)):  # GoogLeNet's auxiliary heads, in training
        probs = probs[0]
    loss = keras.losses.CategoricalCrossentropy()(y, probs)
    penalties = model.losses
    return float(keras.ops.convert_to_numpy(loss + sum(penalties) if penalties else loss))


def initial_loss_check(config, x, y, num_classes, input_shape, contract=None, batch=256):
    """Loss at initialization without regularization against ln(num_classes),
    and the loss with regularization on (it must be higher).

    Both are measured as in a first training step (`_first_step_loss`).

    Args:
        config: the run's `TrainConfig`; its l1/l2 are used for the second
            measurement, or L2 `DEFAULT_CHECK_L2` when it has none.
        x, y: training images and one-hot labels.
        num_classes, input_shape: the dataset's classes, the network's input.
        contract: the `InputContract` of raw `x` (None: `x` is normalized).
        batch: number of examples the loss is measured on.

    Returns:
        Two `CheckResult`s: "initial loss" and "regularization".
    """
    x, y = x[:batch], y[:batch]
    plain_config = _no_regularization(config)
    keras.utils.set_random_seed(config.seed)
    plain = builder.build_model(plain_config, num_classes, input_shape, contract)
    loss = _first_step_loss(plain, x, y)
    expected = math.log(num_classes)
    ratio = loss / expected
    values = {"loss": loss, "expected": expected, "ratio": ratio}
    text = f"loss {loss:.4f} at initialization, expected ln({num_classes}) = {expected:.4f}"
    if not math.isfinite(loss) or ratio > INITIAL_LOSS_FAIL:
        first = CheckResult("initial loss", "fail", text + " (far too high: check the "
                            "initialization scale and the input normalization)", values)
    elif abs(ratio - 1) > INITIAL_LOSS_WARN:
        first = CheckResult("initial loss", "warn", text + f" ({ratio:.2f}x: far off; a "
                            "smaller init of the classifier brings it to ln(C))", values)
    else:
        first = CheckResult("initial loss", "ok", text, values)

    reg = {"l1": config.l1, "l2": config.l2} if (config.l1 or config.l2) else {
        "l1": 0.0, "l2": DEFAULT_CHECK_L2}
    reg_config = dataclasses.replace(plain_config, **reg)
    regularized = builder.build_model(reg_config, num_classes, input_shape, contract)
    regularized.set_weights(plain.get_weights())
    reg_loss = _first_step_loss(regularized, x, y)
    values = {"loss": loss, "regularized_loss": reg_loss, **reg}
    text = (f"loss {loss:.4f} -> {reg_loss:.4f} with l1={reg['l1']:g}, l2={reg['l2']:g} "
            f"(+{reg_loss - loss:.4g})")
    status = "ok" if reg_loss > loss else "fail"
    if status == "fail":
        text += ": the loss did not rise, the penalty is not reaching the loss"
    return [first, CheckResult("regularization", status, text, values)]


def overfit_check(config, x, y, num_classes, input_shape, contract=None, examples=50,
                  max_steps=300, target=OVERFIT_TARGET):
    """Trains a fresh, unregularized model on `examples` training images until
    its training accuracy reaches `target`.

    The config's optimizer and (constant) learning rate are used; with
    ``lr="find"`` Adam at 1e-3. The batch is the whole subset. `contract`
    as for `initial_loss_check`.

    Returns:
        A `CheckResult` "overfit" with the steps taken, or "fail".
    """
    resolve.check_positive_int("examples", examples, minimum=2)
    resolve.check_positive_int("max_steps", max_steps)
    x, y = x[:examples], y[:examples]
    plain_config = _no_regularization(config)
    keras.utils.set_random_seed(config.seed)
    model = builder.build_model(plain_config, num_classes, input_shape, contract)
    if config.lr == "find":
        _compile(model, plain_config, lr=1e-3, optimizer="adam")
        lr_text = "adam lr=0.001"
    else:
        _compile(model, plain_config)
        lr_text = f"{config.optimizer} lr={config.lr:g}"
    steps, accuracy, loss = 0, 0.0, float("nan")
    for steps in range(1, max_steps + 1):  # noqa: B007  (after the loop: the steps taken)
        logs = model.train_on_batch(x, y, return_dict=True)
        accuracy, loss = float(logs["accuracy"]), float(logs["loss"])
        if not math.isfinite(loss) or accuracy >= target:
            break
    values = {"examples": len(x), "steps": steps, "train_accuracy": accuracy, "loss": loss,
              "max_steps": max_steps}
    if math.isfinite(loss) and accuracy >= target:
        # The batch metric comes from the forward pass in training mode; confirm it.
        evaluated = float(model.evaluate(x, y, batch_size=len(x), verbose=0)[1])
        values["eval_accuracy"] = evaluated
        return CheckResult("overfit", "ok", f"{len(x)} examples reached {accuracy:.0%} training "
                           f"accuracy in {steps} steps ({lr_text}; {evaluated:.0%} in inference "
                           "mode)", values)
    why = "the loss diverged" if not math.isfinite(loss) else \
        f"training accuracy {accuracy:.0%} < {target:.0%} after {steps} steps (loss {loss:.3f})"
    return CheckResult("overfit", "fail", f"could not overfit {len(x)} examples with {lr_text}: "
                       f"{why}; try another learning rate or look for a bug", values)


def run_checks(config, data=None, examples=50, max_steps=300, log=print):
    """Runs the initial-loss, regularization and overfit checks for a config.

    Args:
        config: a `TrainConfig`.
        data: the dict of `zoo.training.data.prepare_data(config)` (loaded if None).
        examples, max_steps: for `overfit_check`.
        log: where each result line goes (None for silence).

    Returns:
        The list of `CheckResult`s.
    """
    data = data or data_module.prepare_data(config)
    args = (*data_module.head(data, "train", max(examples, CHECK_IMAGES)), data["num_classes"],
            data["input_shape"],
            data["contract"])
    results = initial_loss_check(config, *args)
    results.append(overfit_check(config, *args, examples=examples, max_steps=max_steps))
    for result in results:
        if log:
            log(result.line())
    return results


def raise_on_failure(results):
    failed = [r for r in results if r.status == "fail"]
    if failed:
        raise SanityCheckError("sanity check failed: " + "; ".join(r.line() for r in failed))


# === Learning-rate finder ===


class LRRangeTest(keras.callbacks.Callback):
    """Sets an exponentially growing learning rate before each training step
    and records the loss after it; stops when the loss diverges.

    Args:
        min_lr, max_lr: the swept range.
        num_steps: steps from min_lr to max_lr.
        smoothing: exponential smoothing of the recorded loss.
        diverge: stop once the smoothed loss exceeds this multiple of the best.
    """

    def __init__(self, min_lr=1e-6, max_lr=10.0, num_steps=200, smoothing=LR_FINDER_SMOOTHING,
                 diverge=LR_FINDER_DIVERGE):
        super().__init__()
        if not 0 < min_lr < max_lr:
            raise resolve.bad_option("min_lr", min_lr, f"a number in (0, max_lr={max_lr})")
        resolve.check_positive_int("num_steps", num_steps, minimum=2)
        self.min_lr, self.max_lr, self.num_steps = float(min_lr), float(max_lr), num_steps
        self.smoothing, self.diverge = smoothing, diverge
        self.lrs, self.losses, self.smoothed = [], [], []
        self._step = 0

    def lr_at(self, step):
        return self.min_lr * (self.max_lr / self.min_lr) ** (step / (self.num_steps - 1))

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate = self.lr_at(self._step)

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])
        self.lrs.append(self.lr_at(self._step))
        self.losses.append(loss)
        self._step += 1
        if not math.isfinite(loss):
            self.model.stop_training = True
            return
        # The average starts at the first loss (no bias towards 0 to correct).
        avg = loss if not self.smoothed else self.smoothed[-1] * self.smoothing + loss * (
            1 - self.smoothing)
        self.smoothed.append(avg)
        if avg > self.diverge * min(self.smoothed) or self._step >= self.num_steps:
            self.model.stop_training = True


@dataclasses.dataclass
class LRFinderResult:
    suggested_lr: float
    min_loss_lr: float
    lrs: list
    losses: list
    smoothed: list
    min_lr: float
    max_lr: float

    def summary(self):
        return {"suggested_lr": self.suggested_lr, "min_loss_lr": self.min_loss_lr,
                "min_lr": self.min_lr, "max_lr": self.max_lr, "steps": len(self.lrs)}


def suggest_lr(lrs, smoothed, min_lr, max_lr):
    """The LR of the smallest smoothed loss divided by 10, kept inside the range."""
    finite = [i for i, v in enumerate(smoothed) if math.isfinite(v)]
    if not finite:
        return min_lr, min_lr
    best = min(finite, key=lambda i: smoothed[i])
    return float(min(max(lrs[best] / 10.0, min_lr), max_lr)), float(lrs[best])


def find_lr(model, x, y, config, min_lr=1e-6, max_lr=10.0, num_steps=200, plot_path=None):
    """The LR range test on `model` (compiled here with the config's optimizer);
    the model's weights are restored afterwards.

    Args:
        model: an uncompiled or compiled keras model.
        x, y: training images and one-hot labels (cycled as needed), or a
            training `augment.streams.Stream` (y None).
        config: the `TrainConfig` giving optimizer, batch size, loss settings.
        min_lr, max_lr, num_steps: the exponential sweep.
        plot_path: where to write the loss-against-LR PNG (None: no plot).

    Returns:
        An `LRFinderResult`.
    """
    weights = model.get_weights()
    test = LRRangeTest(min_lr, max_lr, num_steps)
    _compile(model, config, lr=min_lr)
    if data_module.is_stream(x):  # a streamed dataset: its training pipeline
        model.fit(x.dataset(config.batch_size), steps_per_epoch=num_steps, epochs=1,
                  callbacks=[test], verbose=0)
    else:
        steps_per_epoch = math.ceil(len(x) / config.batch_size)
        model.fit(x, y, batch_size=config.batch_size,
                  epochs=math.ceil(num_steps / steps_per_epoch), callbacks=[test], verbose=0,
                  shuffle=True)
    model.set_weights(weights)
    suggested, at_min = suggest_lr(test.lrs, test.smoothed, min_lr, max_lr)
    result = LRFinderResult(suggested, at_min, test.lrs, test.losses,
                            test.smoothed + [float("nan")] * (len(test.lrs) - len(test.smoothed)),
                            min_lr, max_lr)
    if plot_path:
        plots.plot_lr_finder(result, plot_path)
    return result


def find_lr_for_config(config, data=None, min_lr=1e-6, max_lr=10.0, num_steps=200,
                       plot_path=None):
    """Builds the config's model and runs `find_lr` on its training data."""
    data = data or data_module.prepare_data(config)
    keras.utils.set_random_seed(config.seed)
    model = builder.build_classifier(config, data)
    return find_lr(model, data["x_train"], data["y_train"], config, min_lr=min_lr,
                   max_lr=max_lr, num_steps=num_steps, plot_path=plot_path)
