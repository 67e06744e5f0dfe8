"""Train GoogLeNet with its paper recipe (`RECIPE` in zoo/googlenet.py; docs/training.md#recipes).

    python scripts/train_googlenet.py --help
"""

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

from zoo.cli.train import main

if __name__ == "__main__":
    main(family="googlenet", description=__doc__)
