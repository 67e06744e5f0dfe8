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
