"""The model a `TrainConfig` names, compiled with its optimizer, loss and XLA choice."""

import keras

import zoo
from zoo.training import optim


def model_options(config):
    """The model arguments a config sets (None keeps the model's default)."""
    regularizer = {"l1": config.l1, "l2": config.l2} if (config.l1 or config.l2) else None
    return dict(activation=config.activation, kernel_initializer=config.init,
                batch_norm=config.batch_norm, kernel_regularizer=regularizer,
                dropout=config.dropout, **config.model_options)


def build_model(config, num_classes, input_shape, contract=None):
    """The zoo model a config names, with its ImageNet weights when it has
    some; None options keep the model's defaults. With `contract` (the
    `InputContract` of `data.prepare_data`) it is a `zoo.contract.Classifier`
    that takes raw images: the network's input is `input_shape`."""
    preprocessing = None if contract is None else contract.to_config()
    return zoo.create_model(config.model, num_classes=num_classes, input_shape=input_shape,
                            weights=config.weights, preprocessing=preprocessing,
                            **model_options(config))


def build_classifier(config, data):
    """`build_model` for the data of `data.prepare_data`: raw images in."""
    return build_model(config, data["num_classes"], data["input_shape"], data["contract"])


def resolve_jit(choice):
    """`auto` is off on a CPU-only machine, where XLA made training slower in
    `scripts/bench_models.py` (see docs/benchmarks.md), and Keras' own choice elsewhere
    (always under torch, where Keras lists no devices and `auto` means eager)."""
    if choice == "auto" and keras.backend.backend() != "torch":
        on_cpu_only = all(d.startswith("cpu") for d in keras.distribution.list_devices())
        return False if on_cpu_only else "auto"
    return choice == "on"


def compile_model(model, config, steps_per_epoch, methods=None):
    """Compiles with the config's optimizer and schedule (as the run's training
    `methods` change them, `optim.make_optimizer`), cross-entropy (with its
    label smoothing) and accuracy."""
    model.compile(
        optimizer=optim.make_optimizer(config, steps_per_epoch, methods),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
        jit_compile=resolve_jit(config.jit_compile),
    )
