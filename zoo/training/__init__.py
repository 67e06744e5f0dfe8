"""The training application: one core every script, search and ensemble run uses.

    from zoo.training import TrainConfig, train
    metrics = train(TrainConfig(model="resnet20", dataset="cifar10", epochs=30))

One module per concern: `config` (TrainConfig and its JSON round-trip),
`rundir` (every artifact's reader and writer), `optim` (optimizers and
learning-rate schedules), `callbacks`, `data` (loading, splitting, the input
contract, the fit inputs), `builder` (the model and its compilation),
`evaluate`, `loop` (one run, in phases), `methods` (the training methods as
plug-ins: snapshot and independent ensembles, EMA, SWA, distillation,
temperature scaling), `distribute` (mixed precision and data parallelism),
`babysit` (sanity checks, LR finder), `monitors`, `transfer`, `plots`,
`compat` (the private Keras and keras-tuner APIs the application needs).
"""

from zoo.training import distribute, loop, methods
from zoo.training.builder import build_classifier, build_model, compile_model
from zoo.training.config import TrainConfig
from zoo.training.data import prepare_data
from zoo.training.rundir import RunDir


@distribute.scaled
def train(config):
    """Runs the training job `config` describes (one model, a snapshot ensemble,
    or independent members) and writes its artifacts to `config.out`.

    Returns the metrics dict written to metrics.json.
    """
    config.validate()
    job = methods.job(config)  # a method that is a job of runs (independent members)
    return job.train(config, loop) if job else loop.train_run(config)


__all__ = ["RunDir", "TrainConfig", "build_classifier", "build_model", "compile_model",
           "prepare_data", "train"]
