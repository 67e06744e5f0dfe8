"""The private Keras / keras-tuner internals `zoo.training.compat` relies on, pinned.

These fail loudly when an upgrade moves what the multi-worker fix or the
distributed-search server use: update `zoo/training/compat.py` and its tested range then.
"""

import importlib
import importlib.metadata
import inspect

import pytest

from zoo.training import compat


@pytest.mark.parametrize("package", sorted(compat.SUPPORTED))
def test_installed_versions_are_the_tested_ones(package):
    version = compat.require(package, "the test")
    low, high = compat.SUPPORTED[package]
    assert low <= compat._version_tuple(version) < high


def test_an_untested_version_stops_with_a_clear_error(monkeypatch):
    monkeypatch.setattr(importlib.metadata, "version", lambda package: "3.99.0")
    with pytest.raises(RuntimeError, match=r"--strategy multiworker .* keras>=3\.15,<3\.16; "
                                           r"keras 3\.99\.0 is installed"):
        compat.require("keras", "--strategy multiworker")


def test_keras_trainer_internals_are_where_the_multiworker_fix_expects():
    trainer = importlib.import_module("keras.src.backend.tensorflow.trainer")
    tree = importlib.import_module("keras.src.tree")
    assert callable(trainer._collective_all_reduce_multi_worker)
    assert callable(tree.map_structure)
    build = inspect.signature(trainer.TensorFlowTrainer._maybe_symbolic_build)
    assert list(build.parameters) == ["self", "iterator", "data_batch"]
    reduce = inspect.signature(trainer.reduce_per_replica)
    assert list(reduce.parameters)[:3] == ["values", "strategy", "reduction"]


def test_keras_tuner_chief_internals_are_where_serve_oracle_expects():
    oracle_chief = importlib.import_module("keras_tuner.src.distribute.oracle_chief")
    protos = importlib.import_module("keras_tuner.src.protos")
    assert hasattr(oracle_chief, "OracleServicer") and callable(oracle_chief.exit_chief)
    assert hasattr(protos.get_service_grpc(), "add_OracleServicer_to_server")
