"""Train VGG with its paper recipe (`RECIPE` in zoo/vgg.py; docs/training.md#recipes).

    python scripts/train_vgg.py --help
"""

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

from zoo.cli.train import main

if __name__ == "__main__":
    main(family="vgg", description=__doc__)
