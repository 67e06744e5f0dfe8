"""The interface of a training method, and the state of the run it acts on."""

import dataclasses


@dataclasses.dataclass
class RunState:
    """One run as the phases of `zoo.training.loop` build it up; a method's
    hooks read and change it.

    Attributes:
        config: the `TrainConfig`.
        data: `zoo.training.data.prepare_data`'s dict.
        run: the `RunDir`.
        model: the model being trained (raw images in), then the final model.
        fit_model, fit_data: what `fit` is called on (a wrapper, a pipeline).
        steps_per_epoch: of `fit`.
        compile: `compile(model)` compiles a model as the run's (schedule,
            optimizer, the active methods' changes to both).
        figures, probs: the test figures and probabilities of `model`.
        member_probs: one member's test probabilities (an ensemble's reliability plot).
        calibrated_probs: the temperature-scaled test probabilities.
        report: what the methods add to metrics.json ({"ensemble": ...}).
        extras: what a method keeps between its hooks (the teacher).
    """

    config: object
    data: dict
    run: object
    model: object
    compile: object = None
    fit_model: object = None
    fit_data: dict = None
    steps_per_epoch: int = 0
    figures: dict = None
    probs: object = None
    member_probs: object = None
    calibrated_probs: object = None
    report: dict = dataclasses.field(default_factory=dict)
    extras: dict = dataclasses.field(default_factory=dict)


class Method:
    """A training method: what it adds to a run, each hook a no-op by default.

    `active(config)` says whether the run uses it. `validate(config)` runs for
    every config (also to refuse its settings when it is off). In a run the
    hooks are called in this order: `schedule` and `optimizer` (compile),
    `prepare_fit` (after the data pipeline is built), `callbacks` (by slot:
    "start" before the core's callbacks, "after_backup" between the resume
    backup and the best checkpoint, "end" after them), `after_fit`, then
    `finish` once the test figures of the trained model are known (it may
    replace the model, e.g. by an ensemble). A method that runs a whole job
    of its own (independent members) defines `train(config, runner)`.
    """

    name = ""

    def active(self, config):
        return False

    def validate(self, config):
        pass

    def schedule(self, config, schedule, steps_per_epoch):
        return schedule

    def optimizer(self, config, optimizer):
        return optimizer

    def prepare_fit(self, state):
        pass

    def callbacks(self, state):
        return {}

    def after_fit(self, state):
        pass

    def finish(self, state):
        pass

    train = None  # (config, runner) -> metrics, for a method that is its own job
