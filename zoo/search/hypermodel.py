"""`ZooHyperModel`: keras-tuner builds and compiles zoo models through the training core.

Sampled values become a `TrainConfig` (`dataclasses.replace` on a base config
that fixes the data and epochs), and the model is built and compiled by
`zoo.training.builder`: there is one way of building and compiling a model,
whether a script or a tuner asks.
"""

import dataclasses

import keras_tuner as kt

from zoo import resolve
from zoo.contract import InputContract
from zoo.search import space as space_module
from zoo.training import builder


class ZooHyperModel(kt.HyperModel):
    """Builds and compiles one family's models from sampled hyperparameters.

    Args:
        family: a registered family (`zoo.list_families()`).
        base_config: the `TrainConfig` that fixes everything not searched (data,
            epochs, batch size, augmentation, seed).
        num_classes, input_shape: of the data (`zoo.training.data.prepare_data`):
            its classes and the network's input.
        contract: the data's `zoo.contract.InputContract` (its config dict
            too): the models take raw images.
        steps_per_epoch: training steps per epoch, for the LR schedules.
        space: {name: Param}; the family's coarse space if None.
        scale: "full" (the paper-size variants) or "tiny" (the test_* variants).
        run_eagerly: train without tf.function: quicker for tiny models whose
            trials are a few batches (smoke tests), slower for real ones.
    """

    def __init__(self, family, base_config, num_classes, input_shape, contract, steps_per_epoch,
                 space=None, scale="full", run_eagerly=False, name=None):
        super().__init__(name=name or f"zoo_{family}", tunable=True)
        self.family = resolve.check_choice("family", family, space_module.families())
        self.scale = resolve.check_choice("scale", scale, space_module.SCALES)
        self.base_config = base_config
        self.num_classes, self.input_shape = num_classes, tuple(input_shape)
        self.contract = InputContract.from_config(contract)
        self.steps_per_epoch = steps_per_epoch
        self.space = dict(space or space_module.search_space(family, scale))
        self.run_eagerly = run_eagerly

    def declare_hyperparameters(self, hp):
        self.sample(hp)

    def sample(self, hp):
        """Declares the space on `hp` and returns the active values {name: value}."""
        values = {}
        for name, p in self.space.items():
            if p.when:  # declared either way; keras-tuner returns None while inactive
                with hp.conditional_scope(p.when[0], list(p.when[1])):
                    value = _declare(hp, name, p)
            else:
                value = _declare(hp, name, p)
            if value is not None:
                values[name] = value
        return values

    def config_for(self, values):
        """The `TrainConfig` of sampled values: the base config with them in."""
        model, options = space_module.search_model(self.family, self.scale, values)
        base = self.base_config
        epochs = base.epochs
        schedule = values["schedule"]
        config = dataclasses.replace(
            base, model=model, optimizer=values["optimizer"], lr=float(values["lr"]),
            momentum=float(values.get("momentum") or base.momentum), schedule=schedule,
            # step: lr / 10 at half and three quarters of the run; exponential:
            # lr / 100 over the run; cosine: to 0 over the run.
            lr_milestones=(0.5 * epochs, 0.75 * epochs) if schedule == "step" else (),
            lr_gamma=0.1, lr_decay_epochs=epochs / 2,
            activation=values["activation"], init=values["init"],
            batch_norm=bool(values["batch_norm"]), l1=0.0, l2=float(values["l2"]),
            dropout=float(values["dropout"]), model_options={**base.model_options, **options},
        )
        return config.validate()

    def build_from_values(self, values, compile=True):
        """The model of sampled values (keras-tuner's or a results row), compiled
        with the sampled optimizer and schedule unless `compile` is False."""
        config = self.config_for(values)
        model = builder.build_model(config, self.num_classes, self.input_shape, self.contract)
        if not compile:
            return model
        builder.compile_model(model, config, self.steps_per_epoch)
        model.run_eagerly = self.run_eagerly
        return model

    def build(self, hp):
        return self.build_from_values(self.sample(hp))


def _declare(hp, name, p):
    if p.kind == "float":
        if p.high <= p.low:
            return hp.Fixed(name, p.low)
        return hp.Float(name, p.low, p.high, sampling="log" if p.log else "linear")
    if p.kind == "bool":
        return hp.Fixed(name, p.values[0]) if len(p.values) == 1 else hp.Boolean(name)
    return hp.Choice(name, list(p.values))

