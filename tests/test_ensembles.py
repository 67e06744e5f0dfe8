"""Ensembles and weight averaging as a library (ensembles/)."""

from pathlib import Path

import keras
import numpy as np
import pytest

import ensembles
import zoo
from ensembles import EnsembleModel, SnapshotEnsemble
from zoo.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
CLASSES = 10


def tiny_data(n=32, shape=(16, 16, 1), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n,) + shape).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, CLASSES, n), CLASSES)
    return x, y


def members(names=("test_vgg", "test_resnet")):
    keras.utils.set_random_seed(0)
    return [zoo.create_model(name) for name in names]


def fixed_probs_model(probs):
    """A model that ignores its input and outputs the given class probabilities."""
    inputs = keras.Input((2,))
    table = keras.ops.convert_to_tensor(np.asarray(probs, "float32"))
    outputs = keras.layers.Lambda(lambda x: keras.ops.zeros_like(x[:, :1]) + table)(inputs)
    return keras.Model(inputs, outputs)


def dense_members(count=3, seed=0):
    keras.utils.set_random_seed(seed)
    return [keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(CLASSES, activation="softmax")])
            for _ in range(count)]


@pytest.mark.parametrize("method", ensembles.METHODS)
def test_every_method_fits_predicts_and_round_trips(method, tmp_path):
    x, y = tiny_data(shape=(6,))
    ensemble = EnsembleModel(dense_members(), method=method)
    ensemble.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy",
                     metrics=["accuracy"])
    before = [m.get_weights()[0].copy() for m in ensemble.members]
    histories = ensemble.fit(x, y, epochs=2, batch_size=16, verbose=0, validation_data=(x, y))
    assert len(histories) == 3
    assert all(not np.array_equal(b, m.get_weights()[0])
               for b, m in zip(before, ensemble.members))
    probs = ensemble.predict(x, verbose=0)
    assert probs.shape == (len(x), CLASSES)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    if method == "weighted":  # fitted on the validation data
        weights = keras.ops.convert_to_numpy(ensemble.combination)
        assert weights.sum() == pytest.approx(1.0) and not np.allclose(weights, 1 / 3)

    path = tmp_path / "ensemble.keras"
    ensemble.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, EnsembleModel) and loaded.method == method
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), probs)
    assert np.isfinite(loaded.evaluate(x, y, verbose=0)[0])


def test_zoo_members_of_different_families_round_trip(tmp_path):
    x, _ = tiny_data(n=8)
    ensemble = EnsembleModel(members(("test_vgg", "test_resnet", "test_googlenet")))
    probs = ensemble.predict(x, verbose=0)  # GoogLeNet's auxiliary heads are training-only
    ensemble.save(tmp_path / "zoo.keras")
    loaded = keras.saving.load_model(tmp_path / "zoo.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), probs)


def test_combination_rules_on_known_probabilities():
    a = [[0.6, 0.4, 0.0], [0.1, 0.2, 0.7]]
    b = [[0.4, 0.6, 0.0], [0.2, 0.2, 0.6]]
    c = [[0.45, 0.55, 0.0], [0.0, 0.9, 0.1]]
    models = [fixed_probs_model(p) for p in (a, b, c)]
    x = np.zeros((2, 2), "float32")

    def combined(method):
        return np.asarray(EnsembleModel(models, method=method)(x))

    np.testing.assert_allclose(combined("soft"), np.mean([a, b, c], axis=0), atol=1e-6)
    # Two of three vote for class 1 on the first input; class 2 beats class 1 on the second.
    np.testing.assert_allclose(combined("hard"), [[1 / 3, 2 / 3, 0], [0, 1 / 3, 2 / 3]],
                               atol=1e-6)
    geometric = np.exp(np.mean(np.log(np.maximum([a, b, c], 1e-12)), axis=0))
    np.testing.assert_allclose(combined("geometric"),
                               geometric / geometric.sum(-1, keepdims=True), atol=1e-5)
    assert ensembles.disagreement(np.array([a, b, c])) == pytest.approx((1.0 + 0.5 + 0.5) / 3)


def test_fitted_weights_favour_the_accurate_member():
    labels = np.array([0, 1, 2, 0, 1, 2])
    good = np.eye(3)[labels] * 0.9 + 0.1 / 3
    bad = np.roll(good, 1, axis=0)
    weights = ensembles.fit_combination_weights(np.stack([bad, good]), labels)
    assert weights[1] > 0.95 and weights.sum() == pytest.approx(1.0)


def test_bad_members_and_options_raise_clear_errors():
    with pytest.raises(ValueError, match=r"members=\[\] is not accepted; expected a non-empty"):
        EnsembleModel([])
    with pytest.raises(ValueError, match="same output shape"):
        EnsembleModel([zoo.create_model("test_vgg"), zoo.create_model("test_vgg", num_classes=3)])
    with pytest.raises(ValueError, match="same input shape"):
        EnsembleModel([zoo.create_model("test_vgg"),
                       zoo.create_model("test_vgg", input_shape=(24, 24, 1))])
    with pytest.raises(ValueError, match="method='median' is not accepted; expected one of soft"):
        EnsembleModel(members(), method="median")
    with pytest.raises(ValueError, match="weights=.* is not accepted"):
        EnsembleModel(members(), weights=[1.0, -1.0])


def test_snapshot_schedule_restarts_at_each_cycle_boundary():
    steps, epochs_per_cycle = 10, 2  # 20 steps per cycle
    lr = [ensembles.cyclic_cosine(0.1, epoch, step, steps, epochs_per_cycle)
          for epoch in range(6) for step in range(steps)]
    for start in (0, 20, 40):  # the top of every cycle
        assert lr[start] == pytest.approx(0.1)
        assert lr[start + 10] == pytest.approx(0.05, rel=1e-5)  # half-way down the cosine
        assert lr[start + 19] == pytest.approx(0.05 * (1 + np.cos(np.pi * 19 / 20)), rel=1e-4)
    assert lr[19] < 1e-3 and lr[20] == pytest.approx(0.1)


def test_snapshot_cycles_end_on_epoch_ends_with_a_validation_split():
    # 40 images, validation_split 0.25, batch 7: fit runs ceil(30 / 7) = 5 steps an epoch,
    # not ceil(40 / 7) = 6 as the images alone would say.
    x, y = tiny_data(n=40)
    seen = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append((self.params["steps"], float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))))

    ensemble = SnapshotEnsemble(members(["test_resnet"])[0], cycles=2)
    ensemble.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    ensemble.fit(x, y, epochs=4, batch_size=7, validation_split=0.25, verbose=0,
                 callbacks=[Record()])
    assert {steps for steps, _ in seen} == {5} and len(seen) == 20
    lrs = [lr for _, lr in seen]
    assert lrs[0] == pytest.approx(0.1) and lrs[10] == pytest.approx(0.1)  # epochs 1 and 3
    assert lrs[9] == pytest.approx(0.05 * (1 + np.cos(np.pi * 9 / 10)), rel=1e-5)
    assert len(ensemble.ensemble.members) == 2


def test_snapshot_ensemble_takes_one_snapshot_per_cycle_and_round_trips(tmp_path):
    x, y = tiny_data()
    ensemble = SnapshotEnsemble(members(["test_resnet"])[0], cycles=3, keep=2,
                                directory=tmp_path / "snapshots")
    ensemble.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                     loss="categorical_crossentropy", metrics=["accuracy"])
    ensemble.fit(x, y, epochs=3, batch_size=16, verbose=0)
    assert len(ensemble.ensemble.members) == 2
    assert [p.name for p in ensembles.snapshot.snapshot_paths(tmp_path / "snapshots")] == [
        "snapshot_1.keras", "snapshot_2.keras", "snapshot_3.keras"]
    # The last member is the model as training ended; the snapshots differ.
    last, previous = ensemble.ensemble.members[-1], ensemble.ensemble.members[0]
    np.testing.assert_array_equal(last.predict(x, verbose=0), ensemble.model.predict(x, verbose=0))
    assert not np.allclose(previous.predict(x, verbose=0), last.predict(x, verbose=0))
    probs = ensemble.predict(x, verbose=0)
    ensemble.save(tmp_path / "snap.keras")
    np.testing.assert_array_equal(
        keras.saving.load_model(tmp_path / "snap.keras").predict(x, verbose=0), probs)
    from_disk = ensembles.load_snapshot_ensemble(tmp_path / "snapshots", keep=2)
    np.testing.assert_allclose(from_disk.predict(x, verbose=0), probs, atol=1e-6)


def test_cycles_that_do_not_divide_the_budget_are_refused():
    with pytest.raises(ValueError, match=r"members=3 is not accepted; expected a number of "
                                         r"cycles that divides epochs=10 \(1, 2, 5, 10\)"):
        TrainConfig(ensemble="snapshot", members=3, epochs=10).validate()
    with pytest.raises(ValueError, match="members=0 is not accepted; expected an integer >= 1"):
        TrainConfig(ensemble="independent", members=0).validate()
    with pytest.raises(ValueError, match="keep=6 is not accepted"):
        TrainConfig(ensemble="snapshot", members=5, epochs=10, keep=6).validate()
    x, y = tiny_data()
    snapshot = SnapshotEnsemble(members(["test_vgg"])[0], cycles=4)
    snapshot.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="divides epochs=6"):
        snapshot.fit(x, y, epochs=6)


class RecordWeights(keras.callbacks.Callback):
    def __init__(self, every="batch"):
        super().__init__()
        self.every, self.weights = every, []

    def on_train_batch_end(self, batch, logs=None):
        if self.every == "batch":
            self.weights.append(self.model.get_weights()[0].copy())

    def on_epoch_end(self, epoch, logs=None):
        if self.every == "epoch":
            self.weights.append([w.copy() for w in self.model.get_weights()])


def test_ema_weights_equal_the_closed_form_average():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    decay = 0.8
    model.compile(optimizer=ensembles.ema_optimizer(keras.optimizers.SGD(0.1), decay), loss="mse")
    x = np.random.default_rng(0).normal(size=(40, 3)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5]], "float32")
    record = RecordWeights()
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[record])
    # avg_1 = w_1, avg_k = decay * avg_{k-1} + (1 - decay) * w_k (Keras: no bias correction)
    average = record.weights[0]
    for w in record.weights[1:]:
        average = decay * average + (1 - decay) * w
    np.testing.assert_allclose(model.get_weights()[0], average, rtol=1e-5)
    assert not np.allclose(average, record.weights[-1])


def test_ema_backup_keeps_raw_and_averaged_weights_for_a_resume(tmp_path):
    x, y = tiny_data()

    def make():
        keras.utils.set_random_seed(0)
        model = zoo.create_model("test_vgg")
        model.compile(optimizer=ensembles.ema_optimizer(keras.optimizers.SGD(0.1), 0.9),
                      loss="categorical_crossentropy")
        return model

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            opt = self.model.optimizer
            self.raw = [keras.ops.convert_to_numpy(v) for v in self.model.trainable_variables]
            self.avg = [keras.ops.convert_to_numpy(v) for v in opt._model_variables_moving_average]
            raise KeyboardInterrupt

    class Probe(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            opt = self.model.optimizer
            self.raw = [keras.ops.convert_to_numpy(v) for v in self.model.trainable_variables]
            self.avg = [keras.ops.convert_to_numpy(v) for v in opt._model_variables_moving_average]

    backup = str(tmp_path / "backup")
    kill = Kill()
    with pytest.raises(KeyboardInterrupt):
        make().fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[
            keras.callbacks.BackupAndRestore(backup), kill, *ensembles.ema_callbacks()])
    probe = Probe()
    make().fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[
        keras.callbacks.BackupAndRestore(backup), probe, *ensembles.ema_callbacks()])
    for saved, restored in ((kill.raw, probe.raw), (kill.avg, probe.avg)):
        for a, b in zip(saved, restored):
            np.testing.assert_array_equal(a, b)
    assert any(not np.allclose(r, a) for r, a in zip(kill.raw, kill.avg))


def bn_toy_model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(6, name="hidden")(inputs)
    normed = keras.layers.BatchNormalization(momentum=0.9, name="bn")(hidden)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.ReLU()(normed))
    return keras.Model(inputs, outputs)


def test_swa_averages_epoch_weights_and_recomputes_batch_norm_statistics(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, size=(64, 4)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 3, 64), 3)
    model = bn_toy_model()
    model.compile(optimizer=keras.optimizers.SGD(0.2, momentum=0.9),
                  loss="categorical_crossentropy")
    record = RecordWeights(every="epoch")
    swa = ensembles.SWA(start_epoch=2, bn_data=x, batch_size=16,
                        state_path=tmp_path / "swa.npz")
    model.fit(x, y, epochs=4, batch_size=16, verbose=0, callbacks=[record, swa])

    trainable = [i for i, w in enumerate(model.weights) if w.trainable]
    for index in trainable:
        expected = np.mean([epoch[index] for epoch in record.weights[1:]], axis=0)
        np.testing.assert_allclose(model.weights[index].numpy(), expected, rtol=1e-5, atol=1e-6)
    # The BN statistics are now the averaged network's: mean over the data of
    # the hidden layer's output, variance the mean of the batch variances.
    hidden = keras.Model(model.inputs, model.get_layer("hidden").output).predict(x, verbose=0)
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), hidden.mean(axis=0), rtol=1e-4, atol=1e-5)
    batch_vars = np.mean([hidden[i:i + 16].var(axis=0) for i in range(0, 64, 16)], axis=0)
    np.testing.assert_allclose(bn.moving_variance.numpy(), batch_vars, rtol=1e-4)
    assert bn.momentum == 0.9  # restored
    state = np.load(tmp_path / "swa.npz")
    assert int(state["count"]) == 3 and int(state["last_epoch"]) == 3
