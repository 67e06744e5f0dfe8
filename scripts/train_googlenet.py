"""Train GoogLeNet with its paper recipe (see RECIPES["googlenet"] in zoo/cli.py and the README).

    python scripts/train_googlenet.py --help
"""

from zoo.cli import RECIPES, main

if __name__ == "__main__":
    main(recipe=RECIPES["googlenet"], description=__doc__)
