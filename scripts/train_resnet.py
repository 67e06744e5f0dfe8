"""Train ResNet with its paper recipe (see RECIPES["resnet"] in zoo/cli.py and the README).

    python scripts/train_resnet.py --help
"""

from zoo.cli import RECIPES, main

if __name__ == "__main__":
    main(recipe=RECIPES["resnet"], description=__doc__)
