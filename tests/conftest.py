"""Shared test settings."""

import os
import sys

import pytest

# XLA's CPU backend spends most of a tiny JAX test compiling (each initializer
# shape, each train step); these tests check results, not speed, so compile
# with the cheapest settings (3x faster for GoogLeNet's build and first step).
FAST_XLA_FLAGS = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


@pytest.fixture(scope="session")
def jax_env():
    """The environment of a subprocess that runs under KERAS_BACKEND=jax on the CPU."""
    flags = " ".join(f for f in (os.environ.get("XLA_FLAGS"), FAST_XLA_FLAGS) if f)
    return {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
            "JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}


@pytest.fixture(scope="session")
def torch_env():
    """The environment of a subprocess that runs under KERAS_BACKEND=torch on the CPU."""
    return {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "3",
            "CUDA_VISIBLE_DEVICES": ""}


# Scripts import `startup` (scripts/startup.py) first; tests that load a script
# as a module need scripts/ on the path, as `python scripts/x.py` has.
SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")
if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)


@pytest.fixture(scope="session")
def data():
    """128 embedded MNIST digits (96 training, 32 validation) and 64 test ones."""
    from zoo import training

    return training.prepare_data(training.TrainConfig(dataset="mnist_sample", limit_train=128,
                                                      limit_test=64, val_split=0.25))
