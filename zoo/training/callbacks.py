"""The training core's own callbacks (Keras' callbacks do the rest)."""

import time

import keras


class EpochStats(keras.callbacks.Callback):
    """Adds the learning rate, training seconds and training images/s to each
    epoch's logs (so CSVLogger and TensorBoard record them)."""

    def __init__(self, num_train):
        super().__init__()
        self.num_train = num_train

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._train_end = time.perf_counter(), None

    def on_test_begin(self, logs=None):
        self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        end = time.perf_counter()
        train_seconds = (self._train_end or end) - self._start
        logs["epoch_seconds"] = end - self._start
        logs["train_images_per_sec"] = self.num_train / train_seconds
        logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
