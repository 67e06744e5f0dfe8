"""Hyperparameter search over a zoo family with keras-tuner (zoo/search/).

    python scripts/tune.py --family resnet --tuner random --max-trials 20 --epochs 5 \
        --dataset cifar10 --data-dir DIR --out runs/tune_resnet       # coarse stage
    python scripts/tune.py --out runs/tune_resnet --refine --max-trials 10   # fine stage
    python scripts/tune.py --out runs/tune_resnet --ensemble-top 5    # best 5 as one .keras

Writes DIR/results.csv (one row per trial, best first), DIR/results.png (val
accuracy against the learning rate and the other top hyperparameters) and
DIR/search.json. Distributed: run the same command with KERASTUNER_TUNER_ID=chief
and with KERASTUNER_TUNER_ID=worker0, worker1, ... (plus KERASTUNER_ORACLE_IP and
KERASTUNER_ORACLE_PORT) on every machine; see docs/search.md.
"""

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

from zoo.cli.tune import main

if __name__ == "__main__":
    main(description=__doc__)
