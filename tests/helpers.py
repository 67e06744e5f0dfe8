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


# Prepended to a subprocess' script: `import tensorflow` fails there as if it
# were not installed (Keras and torch only probe for it), so the check shows
# what runs without it.
BLOCK_TENSORFLOW = """
import importlib.abc, importlib.machinery, sys

class _NoTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow":
            return importlib.machinery.ModuleSpec(name, self)

    def create_module(self, spec):
        raise ModuleNotFoundError(f"No module named {spec.name!r} (blocked)", name=spec.name)

    def exec_module(self, module):
        pass

sys.meta_path.insert(0, _NoTensorFlow())
"""
