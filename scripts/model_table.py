"""Prints the README's model table: parameters and multiply-adds at each
model's default input (1000 classes for the ImageNet geometry, 10 otherwise).

    python scripts/model_table.py [--pattern 'resnet*']
"""

import argparse

import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

import zoo
from zoo.flops import count_macs


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pattern", default=None, help="shell-style filter on model names")
    args = parser.parse_args()
    print("| model | input | classes | parameters | MFLOPs (multiply-adds) |")
    print("| --- | --- | --- | ---: | ---: |")
    for name in zoo.list_models(args.pattern):
        if name.startswith("test_"):
            continue
        model = zoo.create_model(name)
        config = model.get_config()
        h, w, c = config["input_shape"]
        print(f"| `{name}` | {h}x{w}x{c} | {config['num_classes']} | "
              f"{model.count_params() / 1e6:.2f} M | {count_macs(model) / 1e6:,.1f} |")


if __name__ == "__main__":
    main()
