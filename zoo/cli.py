"""Command line of the training scripts: one parser, one recipe per family.

Each `scripts/train_<family>.py` calls `main(recipe=...)`; the recipe fills in
the flag defaults with the family's paper settings, and every flag still
overrides them. Bad flags stop at argument parsing with a message naming the
flag, the value and what is accepted.
"""

import argparse
import dataclasses
import json
import sys

from augment.pipelines import DEVICES as AUGMENT_DEVICES
from augment.pipelines import OPTION_NAMES as AUGMENT_OPTIONS
from augment.pipelines import PRESET_NAMES as AUGMENT_PRESETS
from augment.tta import VIEWS as TTA_VIEWS
from ensembles import METHODS as ENSEMBLE_METHODS
from zoo.scale import PRECISIONS, STRATEGIES
from zoo.training import ENSEMBLES, JIT_CHOICES, OPTIMIZERS, SCHEDULES, TrainConfig, train

# Paper recipes. A paper's "weight decay" lambda on an SGD loss is --l2 lambda/2
# here (the penalty l2 * sum w^2 has gradient 2 * l2 * w).
RECIPES = {
    # LeCun et al. 1998 trained 20 epochs on 32x32 padded digits; SGD with
    # momentum and cosine decay replace their stochastic diagonal Levenberg-Marquardt.
    "lenet": dict(model="lenet5", dataset="mnist", image_size=32, epochs=20, batch_size=128,
                  optimizer="momentum", lr=0.05, schedule="cosine", l2=5e-5),
    # Krizhevsky et al. 2012: SGD momentum 0.9, batch 128, lr 0.01 divided by 10
    # twice, weight decay 5e-4, dropout 0.5, ~90 epochs.
    "alexnet": dict(model="alexnet_cifar", dataset="cifar10", epochs=90, batch_size=128,
                    optimizer="momentum", lr=0.01, schedule="step", lr_milestones=(30, 60),
                    l2=2.5e-4, augment="alexnet"),
    # Simonyan & Zisserman 2014: SGD momentum 0.9, batch 256, lr 0.01 divided by
    # 10 three times, weight decay 5e-4, dropout 0.5, 74 epochs.
    "vgg": dict(model="vgg16_cifar", dataset="cifar10", epochs=74, batch_size=256,
                optimizer="momentum", lr=0.01, schedule="step", lr_milestones=(30, 50, 65),
                l2=2.5e-4, augment="standard"),
    # Szegedy et al. 2014: SGD momentum 0.9, lr decreased by 4% every 8 epochs.
    "googlenet": dict(model="googlenet_cifar", dataset="cifar10", epochs=100, batch_size=128,
                      optimizer="momentum", lr=0.01, schedule="exponential", lr_gamma=0.96,
                      lr_decay_epochs=8, l2=1e-4, augment="standard"),
    # He et al. 2015, section 4.2: SGD momentum 0.9, batch 128, lr 0.1 divided by
    # 10 at 32k and 48k iterations (epochs 82 and 123), 64k iterations, wd 1e-4.
    "resnet": dict(model="resnet20", dataset="cifar10", epochs=164, batch_size=128,
                   optimizer="momentum", lr=0.1, schedule="step", lr_milestones=(82, 123),
                   l2=5e-5, augment="standard"),
}


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not accepted; expected an integer >= 1")
    return value


def _number(text):
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not accepted; expected a number") from None


def _lr(text):
    if text.strip().lower() == "find":
        return "find"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not accepted; expected a number or 'find' (LR range test)"
        ) from None


def _milestones(text):
    try:
        return tuple(float(m) for m in text.split(",") if m.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not accepted; expected comma-separated epochs such as 30,60"
        ) from None


def _model_option(text):
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not accepted; expected KEY=VALUE such as zero_init_residual=true"
        )
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a bare string such as pooling=avg
    return key, value


def build_parser(recipe=None, prog=None, description=None):
    defaults = {**dataclasses.asdict(TrainConfig()), **(recipe or {})}
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = defaults
    add = p.add_argument
    add("--model", default=d["model"], help="a registered name (zoo.list_models())")
    add("--dataset", default=d["dataset"],
        help="mnist, mnist_sample, fashion_mnist, cifar10, cifar100, synthetic or folder")
    add("--data-dir", default=d["data_dir"],
        help="directory with the dataset's files (else $ZOO_DATA_DIR, else keras.datasets)")
    add("--epochs", type=_positive_int, default=d["epochs"])
    add("--batch-size", type=_positive_int, default=d["batch_size"])
    add("--optimizer", choices=OPTIMIZERS, default=d["optimizer"])
    add("--lr", type=_lr, default=d["lr"],
        help="peak learning rate, or 'find': run the LR range test first and use its suggestion")
    add("--momentum", type=_number, default=d["momentum"])
    add("--schedule", choices=SCHEDULES, default=d["schedule"], help="learning-rate schedule")
    add("--warmup-epochs", type=_number, default=d["warmup_epochs"],
        help="linear warmup from 0 to --lr over this many epochs")
    add("--lr-milestones", type=_milestones, default=d["lr_milestones"],
        help="step: epochs at which lr is multiplied by --lr-gamma, e.g. 30,60")
    add("--lr-gamma", type=_number, default=d["lr_gamma"], help="step/exponential factor")
    add("--lr-decay-epochs", type=_number, default=d["lr_decay_epochs"],
        help="exponential: epochs per --lr-gamma factor")
    add("--restart-epochs", type=_number, default=d["restart_epochs"],
        help="cosine_restarts: length of the first cycle in epochs")
    add("--weight-decay", type=_number, default=d["weight_decay"],
        help="decoupled weight decay applied by the optimizer (biases and BN excluded)")
    add("--label-smoothing", type=_number, default=d["label_smoothing"])
    add("--activation", default=d["activation"], help="model default if not given")
    add("--init", default=d["init"], help="kernel initializer; model default if not given")
    add("--no-bn", dest="batch_norm", action="store_const", const=False, default=d["batch_norm"],
        help="turn batch normalization off")
    add("--l1", type=_number, default=d["l1"], help="L1 kernel penalty strength")
    add("--l2", type=_number, default=d["l2"], help="L2 kernel penalty strength")
    add("--dropout", type=_number, default=d["dropout"], help="model default if not given")
    add("--option", dest="model_options", type=_model_option, action="append", default=None,
        metavar="KEY=VALUE", help="any other model argument, e.g. stochastic_depth=0.1")
    add("--image-size", type=_positive_int, default=d["image_size"],
        help="zero-pad images to this side (MNIST 28 -> 32 for LeNet-5)")
    add("--augment", choices=AUGMENT_PRESETS, default=d["augment"],
        help="augmentation preset (augment/pipelines.py); the flags below override its pieces")
    add("--augment-device", choices=AUGMENT_DEVICES, default=d["augment_device"],
        help="host: tf.data pipeline on the CPU; device: inside the training step")
    add("--flip", dest="flip", action="store_const", const=True, default=None,
        help="random horizontal flip (default: the preset's; off for digits)")
    add("--no-flip", dest="flip", action="store_const", const=False)
    add("--crop-padding", type=int, default=None, metavar="PIXELS",
        help="pad PIXELS per side, then random crop at the original size (0: off)")
    add("--pca-lighting", type=_number, default=None, metavar="STD",
        help="AlexNet PCA colour noise, alpha ~ N(0, STD) (0.1 in the paper; 0: off)")
    add("--erasing", type=_number, default=None, metavar="P",
        help="random erasing / cutout probability per image (0: off)")
    add("--randaugment", type=int, default=None, metavar="N",
        help="RandAugment with N operations (RGB only; 0: off)")
    add("--mixup", type=_number, default=None, metavar="ALPHA", help="mixup alpha (0: off)")
    add("--cutmix", type=_number, default=None, metavar="ALPHA",
        help="CutMix alpha in (0, 1] (0: off)")
    add("--tta", choices=TTA_VIEWS, default=d["tta"],
        help="also evaluate on test over these views, averaging softmax outputs")
    add("--ensemble", choices=ENSEMBLES, default=d["ensemble"],
        help="independent: train --members models (seeds seed..seed+M-1) and combine them; "
             "snapshot: --members cosine cycles in one run, one snapshot per cycle")
    add("--members", type=_positive_int, default=d["members"], metavar="M",
        help="ensemble size: independent models or snapshot cycles (must divide --epochs)")
    add("--keep", type=_positive_int, default=d["keep"], metavar="m",
        help="snapshot: ensemble the last m snapshots (default all M)")
    add("--ensemble-method", choices=ENSEMBLE_METHODS, default=d["ensemble_method"],
        help="soft (mean probabilities), hard (majority vote), weighted (weights fitted on "
             "the validation split), geometric (mean log-probabilities)")
    add("--member-index", type=int, default=d["member_index"], metavar="K",
        help="independent: train only member K (a separate job); a run without it combines "
             "the finished members")
    add("--ema", type=_number, default=d["ema"], metavar="DECAY",
        help="Polyak/EMA averaging of the weights (e.g. 0.999); evaluate and save the average")
    add("--swa-start", type=_positive_int, default=d["swa_start"], metavar="EPOCH",
        help="SWA: average the weights from the end of this epoch on, then recompute BN stats")
    add("--swa-lr", type=_number, default=d["swa_lr"],
        help="SWA: constant learning rate from --swa-start on (default: keep the schedule)")
    add("--val-split", type=_number, default=d["val_split"],
        help="fraction of the training split held out for validation")
    add("--limit-train", type=_positive_int, default=d["limit_train"],
        help="train on a seeded random subset of N images")
    add("--limit-test", type=_positive_int, default=d["limit_test"])
    add("--seed", type=int, default=d["seed"])
    add("--early-stopping", type=_positive_int, default=d["early_stopping"],
        metavar="PATIENCE", help="stop after PATIENCE epochs without improvement")
    add("--tensorboard", action="store_true", default=d["tensorboard"])
    add("--check", action="store_true", default=d["check"],
        help="run the sanity checks (initial loss, overfit a tiny subset) first; stop on failure")
    add("--monitor", action="store_true", default=d["monitor"],
        help="log update/weight ratios, dead ReLUs, activation stats and gradient norms")
    add("--jit-compile", choices=JIT_CHOICES, default=d["jit_compile"],
        help="XLA compilation of the train step; auto is off on a CPU (faster there)")
    add("--precision", choices=PRECISIONS, default=d["precision"],
        help="mixed_float16 (loss scaling on) / mixed_bfloat16: float16/bfloat16 compute, "
             "float32 variables and outputs")
    add("--strategy", choices=STRATEGIES, default=d["strategy"],
        help="data parallel: mirrored (every local GPU), multiworker (machines in TF_CONFIG; "
             "keras.distribution under jax); --batch-size is the global batch")
    add("--verbose", type=int, choices=(0, 1, 2), default=d["verbose"],
        help="0 silent, 1 progress bar, 2 one line per epoch")
    add("--out", default=None, help="output directory (default runs/MODEL_DATASET)")
    add("--overwrite", action="store_true", help="replace a finished run in --out")
    return p


def parse_config(argv=None, recipe=None, prog=None, description=None):
    """Parses flags into a validated TrainConfig; bad values exit via parser.error."""
    parser = build_parser(recipe, prog, description)
    args = vars(parser.parse_args(argv))
    args["model_options"] = dict(args["model_options"] or {})
    pieces = {name: args.pop(name) for name in AUGMENT_OPTIONS}
    args["augment_options"] = {k: v for k, v in pieces.items() if v is not None}
    args["out"] = args["out"] or f"runs/{args['model']}_{args['dataset']}"
    config = TrainConfig(**args)
    try:
        config.validate()
    except ValueError as err:
        parser.error(str(err))
    return config


def main(argv=None, recipe=None, description=None):
    config = parse_config(argv, recipe, description=description)
    try:
        metrics = train(config)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError) as err:
        # Bad model options, missing data files, a finished run in --out: the
        # message names the option and what is accepted, a traceback adds nothing.
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(
        f"{config.model} on {config.dataset}: test accuracy {metrics['test_accuracy']:.4f} "
        f"(error {100 * metrics['test_error']:.2f}%), {metrics['wall_time_s']:.1f} s, "
        f"{metrics['train_images_per_sec'] or 0:.0f} train images/s -> {config.out}",
        file=sys.stderr,
    )
    return metrics
