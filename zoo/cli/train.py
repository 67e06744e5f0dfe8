"""Command line of the training scripts: one parser, one recipe per family.

Each `scripts/train_<family>.py` calls `main(family=...)`; the family's recipe
(`zoo.get_family(name).recipe`, beside its models) fills in the flag defaults
with the paper's settings, and every flag still overrides them. Bad flags stop
at argument parsing with a message naming the flag, the value and what is
accepted.
"""

import argparse
import dataclasses
import sys

import zoo
from augment.datasets import BAD_IMAGES
from augment.pipelines import DEVICES as AUGMENT_DEVICES
from augment.pipelines import OPTION_NAMES as AUGMENT_OPTIONS
from augment.pipelines import PRESET_NAMES as AUGMENT_PRESETS
from augment.transforms import EVAL as EVAL_TRANSFORMS
from augment.transforms import TRAIN as TRAIN_TRANSFORMS
from augment.tta import VIEWS as TTA_VIEWS
from ensembles import METHODS as ENSEMBLE_METHODS
from zoo import pretrained
from zoo.cli import args as types
from zoo.cli import storage
from zoo.training import builder, train
from zoo.training.callbacks import ResumeStateError
from zoo.training.config import ENSEMBLES, JIT_CHOICES, OPTIMIZERS, SCHEDULES, TrainConfig
from zoo.training.distribute import PRECISIONS, STRATEGIES
from zoo.training.methods.calibrate import CALIBRATIONS
from zoo.training.rundir import RunDirError


def build_parser(recipe=None, prog=None, description=None):
    defaults = {**TrainConfig().to_dict(), **(recipe or {})}
    p = types.Parser(prog=prog, description=description)
    d = defaults
    add = p.add_argument
    add("--model", default=d["model"], help="a registered name (zoo.list_models())")
    add("--dataset", default=d["dataset"],
        help="mnist, mnist_sample, fashion_mnist, cifar10, cifar100, synthetic; folder (class "
             "sub-folders of images) or tfrecord (shards), streamed (docs/data.md)")
    add("--data-dir", default=d["data_dir"],
        help="directory with the dataset's files (else $ZOO_DATA_DIR, else keras.datasets)")
    add("--classes", type=types.int_list, default=d["classes"], metavar="LABELS",
        help="keep only these labels of the dataset, renumbered from 0 (e.g. 0,1,2,3,4)")
    add("--epochs", type=types.positive_int, default=d["epochs"])
    add("--batch-size", type=types.positive_int, default=d["batch_size"])
    add("--optimizer", choices=OPTIMIZERS, default=d["optimizer"])
    add("--lr", type=types.learning_rate, default=d["lr"],
        help="peak learning rate, or 'find': run the LR range test first and use its suggestion")
    add("--momentum", type=types.any_number, default=d["momentum"])
    add("--schedule", choices=SCHEDULES, default=d["schedule"], help="learning-rate schedule")
    add("--warmup-epochs", type=types.any_number, default=None,
        help="linear warmup from 0 to --lr over this many epochs")
    add("--lr-milestones", type=types.epochs_list, default=None,
        help="step: epochs at which lr is multiplied by --lr-gamma, e.g. 30,60")
    add("--lr-gamma", type=types.any_number, default=d["lr_gamma"], help="step/exponential factor")
    add("--lr-decay-epochs", type=types.any_number, default=None,
        help="exponential: epochs per --lr-gamma factor")
    add("--restart-epochs", type=types.any_number, default=None,
        help="cosine_restarts: length of the first cycle in epochs")
    add("--weight-decay", type=types.any_number, default=d["weight_decay"],
        help="decoupled weight decay applied by the optimizer (biases and BN excluded)")
    add("--label-smoothing", type=types.any_number, default=d["label_smoothing"])
    add("--activation", default=d["activation"], help="model default if not given")
    add("--init", default=d["init"], help="kernel initializer; model default if not given")
    add("--no-bn", dest="batch_norm", action="store_const", const=False, default=d["batch_norm"],
        help="turn batch normalization off")
    add("--l1", type=types.any_number, default=d["l1"], help="L1 kernel penalty strength")
    add("--l2", type=types.any_number, default=d["l2"], help="L2 kernel penalty strength")
    add("--dropout", type=types.any_number, default=d["dropout"], help="model default if not given")
    add("--option", dest="model_options", type=types.key_value, action="append", default=None,
        metavar="KEY=VALUE", help="any other model argument, e.g. stochastic_depth=0.1")
    add("--weights", default=d["weights"], metavar="SOURCE|FILE",
        help="start from ImageNet weights: keras or torchvision (downloaded once), or a weights "
             "file (.h5, .pth, .safetensors); images are then normalized as the weights expect, "
             "grayscale repeated to RGB, and resized by --image-size (docs/pretrained.md)")
    add("--image-size", type=types.positive_int, default=d["image_size"],
        help="zero-pad images to this side (MNIST 28 -> 32 for LeNet-5); with --weights, "
             "resize them to it (224 is the weights' own size); folder/tfrecord: the crop "
             "(default: the model's input)")
    add("--train-transform", choices=TRAIN_TRANSFORMS, default=d["train_transform"],
        help="folder/tfrecord: the crop of each training image (augment/transforms.py; "
             "default: the family's paper, else inception)")
    add("--eval-transform", choices=EVAL_TRANSFORMS, default=d["eval_transform"],
        help="folder/tfrecord: how test images are fitted (center: 224 of 256 of the short side; "
             "default: the family's, else center)")
    add("--data-cache", default=d["data_cache"], metavar="memory|DIR",
        help="folder/tfrecord: keep the encoded training images (and the transformed "
             "evaluation ones) after their first read, in memory or in DIR")
    add("--data-service", default=d["data_service"], metavar="grpc://HOST:PORT",
        help="folder/tfrecord: run the input pipeline on a tf.data service cluster "
             "(scripts/data_service.py; docs/scaling.md)")
    add("--bad-images", choices=BAD_IMAGES, default=d["bad_images"],
        help="folder: skip (and name) image files that cannot be used, or stop (error)")
    add("--augment", choices=AUGMENT_PRESETS, default=d["augment"],
        help="augmentation preset (augment/pipelines.py); the flags below override its pieces")
    add("--augment-device", choices=AUGMENT_DEVICES, default=d["augment_device"],
        help="host: tf.data pipeline on the CPU; device: inside the training step")
    add("--flip", dest="flip", action="store_const", const=True, default=None,
        help="random horizontal flip (default: the preset's; off for digits)")
    add("--no-flip", dest="flip", action="store_const", const=False)
    add("--crop-padding", type=types.nonnegative_int, default=None, metavar="PIXELS",
        help="pad PIXELS per side, then random crop at the original size (0: off)")
    add("--pca-lighting", type=types.any_number, default=None, metavar="STD",
        help="AlexNet PCA colour noise, alpha ~ N(0, STD) (0.1 in the paper; 0: off)")
    add("--erasing", type=types.any_number, default=None, metavar="P",
        help="random erasing / cutout probability per image (0: off)")
    add("--randaugment", type=types.nonnegative_int, default=None, metavar="N",
        help="RandAugment with N operations (RGB only; 0: off)")
    add("--mixup", type=types.any_number, default=None, metavar="ALPHA",
        help="mixup alpha (0: off)")
    add("--cutmix", type=types.any_number, default=None, metavar="ALPHA",
        help="CutMix alpha in (0, 1] (0: off)")
    add("--tta", choices=TTA_VIEWS, default=d["tta"],
        help="also evaluate on test over these views, averaging softmax outputs")
    add("--ensemble", choices=ENSEMBLES, default=d["ensemble"],
        help="independent: train --members models (seeds seed..seed+M-1) and combine them; "
             "snapshot: --members cosine cycles in one run, one snapshot per cycle")
    add("--members", type=types.positive_int, default=d["members"], metavar="M",
        help="ensemble size: independent models or snapshot cycles (must divide --epochs)")
    add("--keep", type=types.positive_int, default=d["keep"], metavar="m",
        help="snapshot: ensemble the last m snapshots (default all M)")
    add("--ensemble-method", choices=ENSEMBLE_METHODS, default=d["ensemble_method"],
        help="soft (mean probabilities), hard (majority vote), weighted (weights fitted on "
             "the validation split), geometric (mean log-probabilities)")
    add("--member-index", type=types.nonnegative_int, default=d["member_index"], metavar="K",
        help="independent: train only member K (a separate job); a run without it combines "
             "the finished members")
    add("--ema", type=types.any_number, default=d["ema"], metavar="DECAY",
        help="Polyak/EMA averaging of the weights (e.g. 0.999); evaluate and save the average")
    add("--swa-start", type=types.positive_int, default=None, metavar="EPOCH",
        help="SWA: average the weights from the end of this epoch on, then recompute BN stats")
    add("--swa-lr", type=types.any_number, default=d["swa_lr"],
        help="SWA: constant learning rate from --swa-start on (default: keep the schedule)")
    add("--calibrate", choices=CALIBRATIONS, default=d["calibrate"],
        help="temperature: fit one temperature on the validation split (Guo et al. 2017); "
             "the saved model applies it")
    add("--distill-from", default=d["distill_from"], metavar="TEACHER.keras",
        help="train on this trained model's or ensemble's softened probabilities (Hinton et "
             "al. 2015); any zoo architecture can be the student")
    add("--distill-temperature", type=types.positive_number, default=d["distill_temperature"],
        metavar="T", help="temperature of the softened teacher and student distributions")
    add("--distill-hard-weight", type=types.number(0.0, high=1.0),
        default=d["distill_hard_weight"], metavar="A",
        help="weight of the true-label cross-entropy (1 - A goes to the soft targets)")
    add("--val-split", type=types.any_number, default=d["val_split"],
        help="fraction of the training split held out for validation")
    add("--limit-train", type=types.positive_int, default=d["limit_train"],
        help="train on a seeded random subset of N images")
    add("--limit-test", type=types.positive_int, default=d["limit_test"])
    add("--seed", type=types.nonnegative_int, default=d["seed"])
    add("--early-stopping", type=types.positive_int, default=d["early_stopping"],
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
    add("--verbose", type=int, choices=(0, 1, 2), default=None,
        help="0 silent, 1 progress bar, 2 one line per epoch (default: 1 on a terminal, "
             "2 in a pipe or a log)")
    add("--out", default=None, help="output directory (default runs/MODEL_DATASET)")
    add("--overwrite", action="store_true", help="replace a finished run in --out")
    return p


def parse_config(argv=None, recipe=None, prog=None, description=None):
    """Parses flags into a validated TrainConfig; bad values exit via parser.error
    naming the flag, the value and what is accepted.

    A recipe's schedule is relative to its length: with `--epochs E` its step
    milestones, exponential decay period, warmup and SWA start are scaled by
    E / the recipe's epochs (`scale_recipe`), unless given as flags, which are
    absolute epochs.
    """
    parser = build_parser(recipe, prog, description)
    args = vars(parser.parse_args(argv))
    args["model_options"] = dict(args["model_options"] or {})
    pieces = {name: args.pop(name) for name in AUGMENT_OPTIONS}
    args["augment_options"] = {k: v for k, v in pieces.items() if v is not None}
    args["out"] = args["out"] or f"runs/{args['model']}_{args['dataset']}"
    if args["verbose"] is None:
        args["verbose"] = 1 if sys.stdout.isatty() else 2
    defaults = TrainConfig().to_dict()
    scaled = scale_recipe(recipe or {}, args["epochs"])
    for field in RELATIVE_FIELDS:
        if args[field] is None:
            args[field] = scaled.get(field, defaults[field])
    try:
        config = TrainConfig.from_dict(args, strict=True)
        config.validate()
        # The model's options, checked without building it (zoo.min_input_size),
        # and against the architecture of its weights, without reading them.
        zoo.min_input_size(config.model, **builder.model_options(config))
        if config.weights is not None:
            pretrained.check(config.model, config.weights, builder.model_options(config))
    except (ValueError, TypeError) as err:
        parser.error(flag_message(err))
    return config


# Settings measured in epochs that a recipe gives for its own length.
RELATIVE_FIELDS = ("lr_milestones", "lr_decay_epochs", "warmup_epochs", "restart_epochs",
                   "swa_start")


def scale_recipe(recipe, epochs):
    """The recipe's epoch-valued settings for a run of `epochs` epochs: each is
    multiplied by epochs / recipe["epochs"] (ResNet's milestones 82 and 123 of
    164 become 1 and 1.5 of 2), keeping the paper's shape at any length."""
    if not recipe.get("epochs") or epochs == recipe["epochs"]:
        return {k: recipe[k] for k in RELATIVE_FIELDS if k in recipe}
    factor = epochs / recipe["epochs"]
    scaled = {}
    for key in RELATIVE_FIELDS:
        if key not in recipe:
            continue
        value = recipe[key]
        if key == "lr_milestones":
            scaled[key] = tuple(round(m * factor, 4) for m in value)
        elif key == "swa_start":
            scaled[key] = min(epochs, max(1, round(value * factor)))
        else:
            scaled[key] = round(value * factor, 4)
    return scaled


# Options whose flag is not --option-name (the model's shared options).
FLAGS = {"kernel_initializer": "--init", "batch_norm": "--no-bn",
         "kernel_regularizer": "--l1/--l2", "input_shape": "--image-size"}


def flag_message(err):
    """An error about a setting, worded for the command line: `lr_milestones=(5, 200)
    is not accepted` becomes `argument --lr-milestones: (5, 200) is not accepted`, an
    option of the model given with --option keeps its name after `--option`."""
    text = str(err)
    if text.startswith("unknown model option"):
        return f"argument --option: {text}"
    name, sep, rest = text.partition("=")
    if not sep or not name.isidentifier():
        return text
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    if name in fields or name in FLAGS:
        return f"argument {FLAGS.get(name, '--' + name.replace('_', '-'))}: {rest}"
    if name in ("activation", "dropout"):
        return f"argument --{name}: {rest}"
    return f"argument --option: {text}"


def parse_with_extras(argv, add_arguments, description=None):
    """The training scripts' flags (`parse_config`) plus a script's own.

    Args:
        argv: command-line arguments (None: sys.argv).
        add_arguments: called with an argparse parser to add the script's own flags.
        description: the script's help text.

    Returns:
        (a validated `TrainConfig`, dict of the script's own flags, the parser of
        the script's own flags for `parser.error`). Bad values exit at argument
        parsing with the flag, the value and what is accepted.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if "-h" in argv or "--help" in argv:
        parser = build_parser(description=description)
        add_arguments(parser.add_argument_group("this script"))
        parser.parse_args(["--help"])
    own = argparse.ArgumentParser(add_help=False)
    add_arguments(own)
    extras, rest = own.parse_known_args(argv)
    return parse_config(rest, description=description), vars(extras), own


def recipe_of(family):
    """A family's paper recipe (`zoo.get_family(family).recipe`)."""
    return zoo.get_family(family).recipe


@storage.stopping_on_storage_errors()
def main(argv=None, recipe=None, description=None, family=None):
    """Parses, trains, prints a one-line summary; errors stop with exit status 2."""
    recipe = recipe_of(family) if family else recipe
    config = parse_config(argv, recipe, description=description)
    try:
        metrics = train(config)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError, RunDirError,
            ResumeStateError) as err:
        # Bad model options, missing data files, a finished or busy run in --out:
        # the message names the option and what to do, a traceback adds nothing.
        types.fail(flag_message(err))
    print(
        f"{config.model} on {config.dataset}: test accuracy {metrics['test_accuracy']:.4f} "
        f"(error {100 * metrics['test_error']:.2f}%), {metrics['wall_time_s']:.1f} s, "
        f"{metrics['train_images_per_sec'] or 0:.0f} train images/s -> {config.out}",
        file=sys.stderr,
    )
    return metrics
