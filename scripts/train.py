"""Train any registered model with any settings (no recipe beyond the defaults).

    python scripts/train.py --model resnet20 --dataset cifar10 --data-dir DIR \
        --optimizer nesterov --lr 0.1 --schedule cosine --epochs 30
"""

from zoo.cli import main

if __name__ == "__main__":
    main(description=__doc__)
