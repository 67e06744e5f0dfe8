"""Preview the augmentation presets: a PNG grid, one row per source image, one
column group per preset (the original first, then random draws).

    python scripts/preview_augment.py --out docs/augment_preview.png
    python scripts/preview_augment.py --source mnist_sample --presets standard mixup
"""


import startup  # noqa: F401  (TensorFlow without its start-up noise; scripts/startup.py)

import keras
import numpy as np

from augment import datasets, layers, pipelines
from zoo.cli import args as types
from zoo.cli import storage
from zoo.training import plots


def shapes(count, size=32, seed=0):
    """Colourful test images with an asymmetric shape, so flips and crops show."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / (size - 1)
    images = []
    for k in range(count):
        background = rng.uniform(0.1, 0.6, 3)
        image = background[None, None, :] * (0.6 + 0.4 * yy[..., None])
        cx, cy = rng.uniform(0.3, 0.5), rng.uniform(0.3, 0.7)
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < 0.04
        image[disc] = rng.uniform(0.5, 1.0, 3)
        bar = (xx > 0.75) & (xx < 0.9) & (yy > 0.15 + 0.1 * (k % 3))  # a bar on the right side
        image[bar] = rng.uniform(0.0, 1.0, 3)
        images.append(image)
    return np.round(np.stack(images) * 255).astype(np.uint8)


@storage.stopping_on_storage_errors(storage.AGAIN)
def main(argv=None):
    p = types.Parser(description=__doc__)
    p.add_argument("--source", choices=("shapes", "mnist_sample"), default="shapes")
    p.add_argument("--presets", nargs="+", choices=pipelines.PRESET_NAMES,
                   default=["standard", "alexnet", "strong", "mixup", "cutmix"])
    p.add_argument("--rows", type=types.positive_int, default=4, help="source images")
    p.add_argument("--draws", type=types.positive_int, default=3, help="augmented draws per preset")
    p.add_argument("--seed", type=types.nonnegative_int, default=0)
    p.add_argument("--out", default="docs/augment_preview.png")
    args = p.parse_args(argv)

    if args.source == "shapes":
        images, dataset = shapes(args.rows, seed=args.seed), "shapes"
    else:
        images = datasets.load_dataset("mnist_sample", None).x_train[:args.rows]
        dataset = "mnist_sample"
    mean, _ = datasets.channel_stats(images)
    labels = keras.utils.to_categorical(np.arange(len(images)), len(images)).astype("float32")
    columns = [("original", images / 255.0)]
    for preset in args.presets:
        augmenter = pipelines.build_augmenter(
            pipelines.resolve_spec(preset), mean=mean, image_shape=images.shape[1:],
            dataset=dataset, pca_stats=layers.pca_lighting_stats(images), seed=args.seed)
        for draw in range(args.draws):
            x, _ = pipelines.apply_augmenter(augmenter, images, labels)
            x = keras.ops.convert_to_numpy(x) / 255.0  # pixel values to [0, 1]
            columns.append((preset if draw == 0 else "", np.clip(x, 0, 1)))

    plt = plots.pyplot()
    fig, axes = plt.subplots(len(images), len(columns), squeeze=False,
                             figsize=(0.75 * len(columns), 0.8 * len(images) + 0.3))
    for col, (title, batch) in enumerate(columns):
        for row in range(len(images)):
            ax = axes[row, col]
            ax.imshow(batch[row].squeeze(), cmap="gray" if batch.shape[-1] == 1 else None,
                      vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, col].set_title(title, fontsize=8, loc="left")
    fig.tight_layout(pad=0.2, w_pad=0.1, h_pad=0.1)
    plots.save_figure(fig, args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
