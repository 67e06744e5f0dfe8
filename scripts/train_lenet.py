"""Train LeNet-5 with its paper recipe (see RECIPES["lenet"] in zoo/cli.py and the README).

    python scripts/train_lenet.py --help
"""

from zoo.cli import RECIPES, main

if __name__ == "__main__":
    main(recipe=RECIPES["lenet"], description=__doc__)
