"""Train VGG with its paper recipe (see RECIPES["vgg"] in zoo/cli.py and the README).

    python scripts/train_vgg.py --help
"""

from zoo.cli import RECIPES, main

if __name__ == "__main__":
    main(recipe=RECIPES["vgg"], description=__doc__)
