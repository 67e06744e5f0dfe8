"""Small helpers several test modules share (tests/ is on the path under pytest)."""

from pathlib import Path

from zoo.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def tiny_config(tmp_path, **overrides):
    """A seconds-long training run: test_resnet on 128 embedded MNIST digits."""
    settings = dict(model="test_resnet", dataset="mnist_sample", image_size=None, epochs=2,
                    batch_size=32, limit_train=128, limit_test=64, out=str(tmp_path / "run"),
                    verbose=0, lr=0.05)
    return TrainConfig(**{**settings, **overrides})


def kill_at_epoch(epoch_to_kill):
    """An `EpochStats.on_epoch_end` that raises KeyboardInterrupt at the end of
    epoch `epoch_to_kill` (0-based), standing for a kill; monkeypatch it in."""
    from zoo.training import callbacks

    original = callbacks.EpochStats.on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        if epoch == epoch_to_kill:
            raise KeyboardInterrupt("simulated kill")
        original(self, epoch, logs)

    return on_epoch_end
