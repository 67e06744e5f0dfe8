"""The one module that touches private Keras and keras-tuner APIs.

Nothing else in the project imports `keras.src` or `keras_tuner.src`. Each use
below has no public equivalent in the versions the project supports, and each
checks the installed version first: outside the tested range it stops with a
clear error rather than misbehaving (`tests/test_compat.py` pins both the
ranges and the private names relied on, so an upgrade fails there loudly).

- `patch_keras_for_multiworker`: two fixes to Keras 3's TensorFlow trainer
  under `tf.distribute.MultiWorkerMirroredStrategy`
  (https://github.com/keras-team/keras/issues/20585).
- `serve_oracle`: keras-tuner's chief server loop, polling instead of the
  20-second sleep keras-tuner adds when its chief exits.
"""

import functools
import importlib.metadata
import os
import time

# Tested versions: (lowest, first untested) as (major, minor[, patch]).
SUPPORTED = {
    "keras": ((3, 15), (3, 16)),
    "keras-tuner": ((1, 4, 7), (1, 5)),
}
KERAS_MWMS_ISSUE = "https://github.com/keras-team/keras/issues/20585"


def _version_tuple(text):
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def require(package, feature):
    """Raises RuntimeError unless `package`'s installed version is in the tested
    range for the private API `feature` relies on. Returns the version."""
    version = importlib.metadata.version(package)
    low, high = SUPPORTED[package]
    if not low <= _version_tuple(version) < high:
        span = f">={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"
        raise RuntimeError(
            f"{feature} relies on private {package} internals tested with {package}{span}; "
            f"{package} {version} is installed. Install '{package}{span}' to use it "
            "(zoo/training/compat.py is the place to update for a new release).")
    return version


def patch_keras_for_multiworker():
    """Two fixes to Keras 3's TensorFlow trainer under MultiWorkerMirroredStrategy
    (KERAS_MWMS_ISSUE; `fit` fails without them in Keras 3.15):

    - its first-batch symbolic build all-reduces the (nested) input batch,
      which the collective strategy refuses: the local batch is enough to
      know the shapes;
    - it averages the scalar step logs (loss, metrics) with `axis=0`, which a
      scalar lacks: they are averaged over replicas with `axis=None`.

    Both only change behaviour under a multi-worker collective strategy.
    """
    require("keras", "--strategy multiworker (TensorFlow backend)")
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if getattr(tf_trainer, "_zoo_multiworker_patched", False):
        return
    multi_worker = tf_trainer._collective_all_reduce_multi_worker
    build, reduce_per_replica = (tf_trainer.TensorFlowTrainer._maybe_symbolic_build,
                                 tf_trainer.reduce_per_replica)

    def local(strategy, value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None or not multi_worker(strategy):
            return build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            data_batch = tree.map_structure(functools.partial(local, strategy), next(it))
            break
        return build(self, data_batch=data_batch)

    def reduce(values, strategy, reduction="auto"):
        if reduction in ("auto", "mean") and multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return reduce_per_replica(values, strategy, reduction)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce
    tf_trainer._zoo_multiworker_patched = True


def serve_oracle(oracle, poll_seconds=0.2):
    """keras-tuner's chief server (`oracle_chief.start_server`), polling every
    `poll_seconds` instead of sleeping 20 s once the first worker is told to stop."""
    require("keras-tuner", "distributed search (KERASTUNER_TUNER_ID=chief)")
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_insecure_port(
        f"{os.environ['KERASTUNER_ORACLE_IP']}:{os.environ['KERASTUNER_ORACLE_PORT']}")
    server.start()
    try:
        while not (servicer.stop_triggered and oracle_chief.exit_chief(oracle)):
            time.sleep(poll_seconds)
    finally:
        server.stop(grace=1)
