"""Train LeNet-5 with its paper recipe (`RECIPE` in zoo/lenet.py; docs/training.md#recipes).

    python scripts/train_lenet.py --help
"""

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

from zoo.cli.train import main

if __name__ == "__main__":
    main(family="lenet", description=__doc__)
