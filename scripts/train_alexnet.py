"""Train AlexNet with its paper recipe (see RECIPES["alexnet"] in zoo/cli.py and the README).

    python scripts/train_alexnet.py --help
"""

from zoo.cli import RECIPES, main

if __name__ == "__main__":
    main(recipe=RECIPES["alexnet"], description=__doc__)
