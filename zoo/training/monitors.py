"""Training monitors: callbacks that put diagnostic values into the epoch logs.

CS231n's "babysitting" advice (Karpathy 2015-2017) on what to watch besides
the loss:

- the ratio of the update's norm to the weights' norm per layer, about 1e-3
  for a healthy learning rate (much higher: the LR is too high; much lower:
  too low);
- the fraction of dead ReLU units (units that output zero for every input);
- per-layer activation mean and standard deviation (Glorot & Bengio 2010;
  He et al. 2015): they should neither collapse towards zero nor saturate;
- gradient norms per layer (vanishing or exploding gradients).

`TrainingMonitor` adds these to each epoch's `logs`, so the `CSVLogger` and
`TensorBoard` callbacks that follow it in `zoo.training.train` record them.
Keys are `update_ratio/LAYER`, `dead_frac/LAYER`, `act_mean/LAYER`,
`act_std/LAYER`, `grad_norm/LAYER`; with more than `max_layers` layers only
summaries (`.../min`, `.../median`, `.../max` or `.../mean`) are logged so the
CSV stays readable.

Activation statistics and gradients are measured on a fixed probe batch in
inference mode; update ratios are averaged over every `update_every`-th
training step of the epoch. Gradients need the backend (TensorFlow, JAX or torch),
imported lazily.
"""

import math

import keras
import numpy as np

import zoo
from zoo.contract import Classifier
from zoo.training import data as data_module
from zoo.training import plots

RELU_LIKE = ("relu", "relu6")


def weighted_layers(model):
    """The Conv2D and Dense layers with a kernel, in graph order (a
    `Classifier`'s are its network's)."""
    if isinstance(model, Classifier):
        model = model.network
    return [layer for layer in model.layers
            if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]


def activation_layers(model):
    """The activation layers (named `*_act` in zoo models, or any Activation /
    ReLU-family layer)."""
    kinds = (keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU,
             keras.layers.PReLU, keras.layers.ELU)
    return [layer for layer in model.layers
            if isinstance(layer, kinds) or layer.name.endswith("_act")]


def _is_relu(layer):
    if isinstance(layer, keras.layers.ReLU):
        return True
    fn = getattr(layer, "activation", None)
    name = getattr(fn, "__name__", str(fn))
    return name in RELU_LIKE


def activation_model(model, layers=None):
    """A model mapping the inputs to the outputs of `layers` (default: the
    activation layers)."""
    layers = activation_layers(model) if layers is None else layers
    return keras.Model(model.inputs, [layer.output for layer in layers]), layers


def activation_stats(model, x, layers=None, batch_size=256):
    """Per-layer activation statistics of `model` on `x` (inference mode).

    Returns:
        {layer name: {"mean", "std", "dead_frac" (ReLU layers; None otherwise),
        "values" (a flat sample of up to 20000 activations)}}.
    """
    probe, layers = activation_model(model, layers)
    outputs = probe.predict(x, batch_size=batch_size, verbose=0)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    rng = np.random.default_rng(0)
    stats = {}
    for layer, out in zip(layers, outputs):
        out = np.asarray(out, dtype="float32")
        flat = out.reshape(-1)
        dead = None
        if _is_relu(layer):
            # A unit (a channel for conv maps) is dead when it is 0 for every input
            # and position of the probe batch.
            per_unit = np.abs(out.reshape(-1, out.shape[-1])).max(axis=0)
            dead = float(np.mean(per_unit <= 0.0))
        sample = flat if flat.size <= 20000 else rng.choice(flat, 20000, replace=False)
        stats[layer.name] = {"mean": float(flat.mean()), "std": float(flat.std()),
                             "dead_frac": dead, "values": sample}
    return stats


def gradient_norms(model, x, y, loss_fn=None):
    """L2 norm of the loss gradient with respect to each kernel, on one batch
    in inference mode. Dispatches on the Keras backend (TensorFlow's GradientTape,
    `jax.grad`, torch autograd).

    Returns:
        {layer name: norm} for `weighted_layers(model)`.
    """
    loss_fn = loss_fn or keras.losses.CategoricalCrossentropy()
    layers = weighted_layers(model)
    kernels = [layer.kernel for layer in layers]
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=False))
        grads = tape.gradient(loss, [k.value for k in kernels])
    elif backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        index = {id(v): i for i, v in enumerate(model.trainable_variables)}

        def compute(values):
            out, _ = model.stateless_call(values, non_trainable, x, training=False)
            return loss_fn(y, out)

        all_grads = jax.grad(compute)(trainable)
        grads = [all_grads[index[id(k)]] if id(k) in index else None for k in kernels]
    elif backend == "torch":
        import torch

        loss = loss_fn(y, model(x, training=False))
        grads = torch.autograd.grad(loss, [k.value for k in kernels], allow_unused=True)
    else:
        raise NotImplementedError(
            f"gradient norms support the tensorflow, jax and torch backends, not {backend!r}")
    return {layer.name: float(np.linalg.norm(keras.ops.convert_to_numpy(g))) if g is not None
            else 0.0 for layer, g in zip(layers, grads)}


def _summaries(prefix, values, how=("min", "median", "max")):
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return {}
    fns = {"min": np.min, "median": np.median, "max": np.max, "mean": np.mean}
    return {f"{prefix}/{name}": float(fns[name](finite)) for name in how}


class TrainingMonitor(keras.callbacks.Callback):
    """Adds update/weight ratios, dead ReLU fractions, activation mean/std and
    gradient norms to each epoch's logs.

    Args:
        probe_x, probe_y: a fixed batch (normalized images, one-hot labels) for
            the activation and gradient statistics.
        update_every: measure the update/weight ratio every this many steps of
            an epoch, starting with its first.
        max_layers: log per-layer values up to this many layers, else summaries.
        loss_fn: loss for the gradient norms (default categorical cross-entropy).
        net: the network to watch when `fit` runs a wrapper around it (such as
            an augmentation model); default: the model being fit.
    """

    def __init__(self, probe_x, probe_y, update_every=10, max_layers=12, loss_fn=None, net=None):
        super().__init__()
        if update_every < 1:
            raise ValueError(f"update_every={update_every!r} is not accepted; expected an "
                             "integer >= 1")
        self.probe_x, self.probe_y = probe_x, probe_y
        self.update_every, self.max_layers = update_every, max_layers
        self.loss_fn, self.net = loss_fn, net
        self._before, self._ratios = None, {}

    @property
    def _net(self):
        return self.net or self.model

    def on_epoch_begin(self, epoch, logs=None):
        self._ratios = {layer.name: [] for layer in weighted_layers(self._net)}

    def on_train_batch_begin(self, batch, logs=None):
        if batch % self.update_every == 0:  # the first step of every epoch included
            self._before = {layer.name: keras.ops.convert_to_numpy(layer.kernel)
                            for layer in weighted_layers(self._net)}

    def on_train_batch_end(self, batch, logs=None):
        if self._before is not None:
            for layer in weighted_layers(self._net):
                old = self._before[layer.name]
                new = keras.ops.convert_to_numpy(layer.kernel)
                norm = np.linalg.norm(old)
                if norm > 0:
                    self._ratios[layer.name].append(float(np.linalg.norm(new - old) / norm))
            self._before = None

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        layers = weighted_layers(self._net)
        ratios = {name: float(np.mean(v)) if v else float("nan")
                  for name, v in self._ratios.items()}
        acts = activation_stats(self._net, self.probe_x)
        grads = gradient_norms(self._net, self.probe_x, self.probe_y, self.loss_fn)
        relu_acts = {n: s["dead_frac"] for n, s in acts.items() if s["dead_frac"] is not None}
        if len(layers) <= self.max_layers and len(acts) <= self.max_layers:
            logs.update({f"update_ratio/{n}": v for n, v in ratios.items()})
            logs.update({f"grad_norm/{n}": v for n, v in grads.items()})
            for name, s in acts.items():
                logs[f"act_mean/{name}"] = s["mean"]
                logs[f"act_std/{name}"] = s["std"]
            logs.update({f"dead_frac/{n}": v for n, v in relu_acts.items()})
        else:
            logs.update(_summaries("update_ratio", list(ratios.values())))
            logs.update(_summaries("grad_norm", list(grads.values())))
            logs.update(_summaries("act_std", [s["std"] for s in acts.values()]))
            logs.update(_summaries("act_mean", [s["mean"] for s in acts.values()],
                                   how=("min", "max")))
            logs.update(_summaries("dead_frac", list(relu_acts.values()), how=("mean", "max")))


def make_monitor(data, net=None, probe_size=128, **kwargs):
    """A `TrainingMonitor` of `net` probing the first `probe_size` validation
    images (training images when there is no validation split). A model that
    carries its input contract (`zoo.contract.Classifier`) is watched through
    its network, on the probe images as the network sees them."""
    x, y = data_module.head(data, "val" if data.get("x_val") is not None else "train",
                            probe_size)
    if isinstance(net, Classifier):
        x, net = keras.ops.convert_to_numpy(net.preprocess(x)), net.network
    return TrainingMonitor(x, y, net=net, **kwargs)


def init_activation_stats(model_name, init, activation, batch=64, max_layers=8, seed=0,
                          **model_kwargs):
    """Activation statistics at initialization of `model_name` without batch norm
    on a batch of standard normal inputs (the course's demonstration).

    Args:
        model_name: a registered zoo model.
        init: kernel initializer (small_normal, xavier, he, ...).
        activation: tanh, relu, ...
        batch: number of random inputs.
        max_layers: keep this many activation layers, evenly spaced (None: all).
        seed: seed of the weights and inputs.
        model_kwargs: other `create_model` options (batch_norm defaults to False).

    Returns:
        The ordered dict of `activation_stats` for the kept layers.
    """


    keras.utils.set_random_seed(seed)
    model = zoo.create_model(model_name, kernel_initializer=init, activation=activation,
                             **{"batch_norm": False, **model_kwargs})
    layers = activation_layers(model)
    if max_layers and len(layers) > max_layers:
        keep = np.unique(np.linspace(0, len(layers) - 1, max_layers).round().astype(int))
        layers = [layers[i] for i in keep]
    x = np.random.default_rng(seed).standard_normal((batch, *model.input_shape[1:]))
    return activation_stats(model, x.astype("float32"), layers)


def plot_activation_histograms(rows, path, dpi=60):
    """One row of per-layer histograms per setting (a shared x range per row).

    Args:
        rows: {row label: `activation_stats` dict}.
        path: PNG path.
    """
    plt = plots.pyplot()
    ncols = max(len(stats) for stats in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.9 * ncols, 1.7 * len(rows)),
                             squeeze=False)
    for r, (label, stats) in enumerate(rows.items()):
        # One x range per row, so a collapse towards zero shows as a narrowing spike.
        bound = max([float(np.abs(s["values"]).max()) for s in stats.values() if s["values"].size]
                    + [1e-12])
        for c in range(ncols):
            ax = axes[r][c]
            if c >= len(stats):
                ax.axis("off")
                continue
            name, s = list(stats.items())[c]
            ax.hist(s["values"], bins=40, range=(-bound, bound), color=f"C{r % 10}")
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            ax.set_title(f"{name}\nmean {s['mean']:.2g} std {s['std']:.2g}", fontsize=6)
        axes[r][0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    return plots.save_figure(fig, path, dpi=dpi)
