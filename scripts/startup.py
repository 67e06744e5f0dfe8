"""What every script does first: load TensorFlow without its start-up noise.

TensorFlow 2.21 logs through absl before `absl::InitializeLog()` runs, so
`TF_CPP_MIN_LOG_LEVEL` no longer hides its start-up lines ("Could not find cuda
drivers", cpu_feature_guard, oneDNN, "failed call to cuInit"). Importing this
module sets `TF_CPP_MIN_LOG_LEVEL=2` (later INFO logs) and loads TensorFlow and
its devices with stderr caught in a file; every caught line that is not such
start-up noise is written back to stderr, so real warnings stay visible.

The same happens when the user set TF_CPP_MIN_LOG_LEVEL (the usual way to
quiet TensorFlow, which these start-up lines ignore: they come before the
level is read); nothing happens when Keras runs on another backend
(TensorFlow is not loaded then).
"""

import importlib.util
import os
import re
import sys
import tempfile

# Start-up lines of TensorFlow / XLA / absl on a machine without a GPU.
NOISE = re.compile(
    r"All log messages before absl::InitializeLog|cudart_stub\.cc|cuda_platform\.cc|"
    r"cpu_feature_guard\.cc|To enable the following instructions|port\.cc:\d+\] oneDNN|"
    r"Unable to register cu(DNN|FFT|BLAS) factory|computation_placer\.cc|"
    r"TF-TRT Warning|cuda_(dnn|fft|blas)\.cc")


def _load_quietly():
    # A level the user chose is kept; TensorFlow ignores it for these lines anyway.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend != "tensorflow" or importlib.util.find_spec("tensorflow") is None:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # where "failed call to cuInit" comes
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines(keepends=True):
                if not NOISE.search(line):
                    sys.stderr.write(line)


_load_quietly()
