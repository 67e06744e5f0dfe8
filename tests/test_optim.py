"""Optimizers by name and learning-rate schedules (zoo/training/optim.py)."""

from pathlib import Path

import keras
import pytest

from zoo.training import TrainConfig, optim

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.mark.parametrize("name, cls, extra", [
    ("sgd", keras.optimizers.SGD, {"momentum": 0.0, "nesterov": False}),
    ("momentum", keras.optimizers.SGD, {"momentum": 0.9, "nesterov": False}),
    ("nesterov", keras.optimizers.SGD, {"momentum": 0.9, "nesterov": True}),
    ("adagrad", keras.optimizers.Adagrad, {}),
    ("rmsprop", keras.optimizers.RMSprop, {"rho": 0.9}),
    ("adam", keras.optimizers.Adam, {}),
    ("adamw", keras.optimizers.AdamW, {"weight_decay": 0.05}),
])
def test_optimizers_by_name(name, cls, extra):
    optimizer = optim.make_optimizer(TrainConfig(optimizer=name, weight_decay=0.05), 10)
    assert type(optimizer) is cls
    config = optimizer.get_config()
    for key, value in extra.items():
        assert config[key] == pytest.approx(value)
    assert config["weight_decay"] == pytest.approx(0.05)


def lr_at(config, step, steps_per_epoch=10):
    schedule = optim.make_schedule(config, steps_per_epoch)
    return schedule if isinstance(schedule, float) else float(schedule(step))


def test_schedules_have_the_textbook_values():
    step = TrainConfig(schedule="step", lr=0.1, epochs=10, lr_milestones=(4, 8))
    assert [lr_at(step, s) for s in (0, 39, 40, 79, 80)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001])
    exp = TrainConfig(schedule="exponential", lr=0.1, lr_gamma=0.5, lr_decay_epochs=2, epochs=10)
    assert lr_at(exp, 40) == pytest.approx(0.1 * 0.5 ** 2)
    cos = TrainConfig(schedule="cosine", lr=0.1, epochs=10)
    assert lr_at(cos, 0) == pytest.approx(0.1) and lr_at(cos, 50) == pytest.approx(0.05)
    assert lr_at(cos, 100) == pytest.approx(0.0, abs=1e-7)
    restarts = TrainConfig(schedule="cosine_restarts", lr=0.1, restart_epochs=2, epochs=10)
    assert lr_at(restarts, 19) < 0.01 and lr_at(restarts, 20) == pytest.approx(0.1)
    warm = TrainConfig(schedule="cosine", lr=0.1, epochs=10, warmup_epochs=2)
    assert lr_at(warm, 0) == pytest.approx(0.1 / 20) and lr_at(warm, 9) == pytest.approx(0.05)
    assert lr_at(warm, 20) == pytest.approx(0.1) and lr_at(warm, 100) == pytest.approx(0.0,
                                                                                       abs=1e-7)
    assert lr_at(TrainConfig(schedule="constant", lr=0.3, warmup_epochs=1),
                 5) == pytest.approx(0.3 * 6 / 10)


def test_warmup_schedule_round_trips_through_keras_serialization():
    schedule = optim.make_schedule(TrainConfig(schedule="step", lr=0.1, epochs=10,
                                                  lr_milestones=(5,), warmup_epochs=1), 10)
    schedules = keras.optimizers.schedules
    restored = schedules.deserialize(schedules.serialize(schedule))
    for step in (0, 5, 10, 60):
        assert float(restored(step)) == pytest.approx(float(schedule(step)))
