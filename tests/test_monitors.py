"""Training monitors and activation statistics (zoo/training/monitors.py)."""

import sys
from pathlib import Path

import keras
import numpy as np

import zoo
from zoo.training import monitors

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))


def test_monitor_summarizes_many_layers_and_finds_dead_relus(data):
    keras.utils.set_random_seed(0)
    model = zoo.create_model("test_resnet", num_classes=10, input_shape=data["input_shape"],
                             preprocessing=data["contract"].to_config())
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    # The network inside the raw-image model is watched, on the probe as it sees it.
    monitor = monitors.make_monitor(data, model, probe_size=32, update_every=1, max_layers=2)
    assert monitor.net is model.network and monitor.probe_x.shape[1:] == data["input_shape"]
    history = model.fit(data["x_train"][:64], data["y_train"][:64], batch_size=32, epochs=1,
                        callbacks=[monitor], verbose=0).history
    assert {"update_ratio/median", "grad_norm/max", "act_std/min", "dead_frac/mean"} <= set(
        history)
    assert not any(key.startswith("update_ratio/conv") for key in history)
    # A ReLU layer fed only negative numbers: every unit dead.
    inputs = keras.Input((4,))
    dead = keras.Model(inputs, keras.layers.Activation("relu", name="x_act")(
        keras.layers.Dense(3, kernel_initializer="zeros", bias_initializer=keras.initializers
                           .Constant(-1.0), name="d")(inputs)))
    stats = monitors.activation_stats(dead, np.ones((8, 4), "float32"))
    assert stats["x_act"]["dead_frac"] == 1.0


def test_small_init_collapses_tanh_activations_and_he_keeps_relu_spread(tmp_path):
    small = monitors.init_activation_stats("test_vgg", "small_normal", "tanh", batch=16)
    he = monitors.init_activation_stats("test_vgg", "he", "relu", batch=16)
    small_std = [s["std"] for s in small.values()]
    he_std = [s["std"] for s in he.values()]
    assert small_std[-1] < 1e-3 * small_std[0] and min(he_std) > 0.1
    import plot_activations

    plot_activations.main(["--model", "test_vgg", "--batch", "8", "--out",
                           str(tmp_path / "a.png")])
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_activations.main(["--model", "test_vgg", "--batch", "8", "--png",  # the old name
                           str(tmp_path / "b.png")])
    assert (tmp_path / "b.png").exists()
