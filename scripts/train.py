"""Train any registered model with any settings (no recipe beyond the defaults).

    python scripts/train.py --model resnet20 --dataset cifar10 --data-dir DIR --epochs 30
    python scripts/train.py --help
"""

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

from zoo.cli.train import main

if __name__ == "__main__":
    main(description=__doc__)
