"""One worker of the two-process MultiWorkerMirroredStrategy test (tests/test_scale.py).

Run with TF_CONFIG set for this process; trains a tiny model through
`zoo.training.train(strategy="multiworker")` and writes this worker's final
weights (`weights_INDEX.npz`) and per-epoch losses (`losses_INDEX.json`) to DUMP.

    TF_CONFIG=... python tests/multiworker_worker.py DUMP OUT
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np

from zoo import training
from zoo.training import distribute as scale
from zoo.training import rundir


def main(dump, out):
    dump = Path(dump)
    index = scale.read_tf_config()["task"]["index"]
    save = rundir.save_model

    def save_and_dump(model, path):
        # The final model of every worker (the non-chief's own files go to a
        # temporary directory that train() removes).
        arrays = {f"trainable_{i}": keras.ops.convert_to_numpy(v) for i,
                  v in enumerate(model.trainable_weights)}
        arrays.update({f"other_{i}": np.asarray(v)
                       for i, v in enumerate(model.non_trainable_weights)})
        np.savez(dump / f"weights_{index}.npz", **arrays)
        save(model, path)

    rundir.save_model = save_and_dump
    config = training.TrainConfig(
        model="lenet5", dataset="mnist_sample", image_size=32, limit_train=192, limit_test=32,
        val_split=0.0, epochs=2, batch_size=32, optimizer="momentum", lr=0.05, seed=0, verbose=0,
        strategy="multiworker", out=out)
    metrics = training.train(config)
    payload = {"loss": metrics["history"]["loss"], "chief": scale.is_chief(),
               "out_files": sorted(p.name for p in Path(out).glob("*")) if scale.is_chief() else []}
    (dump / f"losses_{index}.json").write_text(json.dumps(payload))


if __name__ == "__main__":
    main(*sys.argv[1:3])
