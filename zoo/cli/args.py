"""What every script's command line shares: argparse types whose errors name the
value and what is accepted, one way to stop with an error.

Standard library only: `scripts/benchlib.py` loads this file by its path (not
as part of the `zoo` package, which loads Keras) for the benchmarks that must
not start a Keras backend in their parent process.

argparse prefixes a type's message with the flag, so a bad value reads
`argument --epochs: '0' is not accepted; expected an integer >= 1`.
"""

import argparse
import json
import sys
from pathlib import Path

MODEL_FILE = "model.keras"  # a run directory's model (zoo.training.rundir.MODEL)

def fail(message, code=2):
    """Stops a script with `error: message` on stderr and exit status `code`,
    without a traceback (the message says what to change)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Flag defaults in the help, and the script's docstring as written. No
    "(default: None)" or "(default: False)", nor a second default where the help
    already says what the default is."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (plus where the flags are
    listed), not the whole usage block of a script with sixty flags."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n(--help lists every flag)\n")


def deprecated_alias(new):
    """An argparse action for an old spelling of the flag `new`: stores the
    value where `new` does, saying once on stderr that the name changed."""

    class Alias(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            print(f"notice: {option_string} is now {new} (the old name works for one more "
                  "release)", file=sys.stderr)
            setattr(namespace, self.dest, values)

    return Alias


def _rejected(text, accepted):
    return argparse.ArgumentTypeError(f"{text!r} is not accepted; expected {accepted}")


def integer(minimum=None):
    """An argparse type: an integer, at least `minimum`."""
    accepted = "an integer" + (f" >= {minimum}" if minimum is not None else "")

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise _rejected(text, accepted) from None
        if minimum is not None and value < minimum:
            raise _rejected(text, accepted)
        return value

    parse.__name__ = "integer"
    return parse


positive_int = integer(1)
nonnegative_int = integer(0)


def number(low=None, low_open=False, high=None, high_open=False):
    """An argparse type: a finite number within the given bounds."""
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high:g}")
    accepted = "a number" + (" " + " and ".join(bounds) if bounds else "")

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise _rejected(text, accepted) from None
        if value != value or value in (float("inf"), float("-inf")):
            raise _rejected(text, accepted)
        if low is not None and (value < low or (low_open and value == low)):
            raise _rejected(text, accepted)
        if high is not None and (value > high or (high_open and value == high)):
            raise _rejected(text, accepted)
        return value

    parse.__name__ = "number"
    return parse


any_number = number()
positive_number = number(0.0, low_open=True)


def choice(option, choices):
    """An argparse type: one of `choices` (named `option` in the message)."""
    def parse(text):
        if text not in choices:
            raise _rejected(text, "one of " + ", ".join(map(str, choices)))
        return text

    parse.__name__ = option
    return parse


def comma_choices(option, choices):
    """An argparse type: a comma-separated list of names from `choices`."""
    def parse(text):
        values = [v.strip() for v in text.split(",") if v.strip()]
        if not values or any(v not in choices for v in values):
            raise _rejected(text, "comma-separated names from " + ", ".join(choices))
        return values

    parse.__name__ = option
    return parse


def learning_rate(text):
    """A positive number, or 'find' (the LR range test)."""
    if text.strip().lower() == "find":
        return "find"
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not value > 0:
        raise _rejected(text, "a number > 0 or 'find' (LR range test)")
    return value


def epochs_list(text):
    """Comma-separated epochs such as 30,60."""
    try:
        return tuple(float(m) for m in text.split(",") if m.strip())
    except ValueError:
        raise _rejected(text, "comma-separated epochs such as 30,60") from None


def int_list(text):
    """Comma-separated distinct non-negative integers such as 5,6,7."""
    try:
        values = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        values = []
    if not values or len(set(values)) != len(values) or min(values) < 0:
        raise _rejected(text, "distinct non-negative integers such as 5,6,7,8,9")
    return values


IMAGENET = "imagenet:"


def imagenet_name(text):
    """NAME of an `imagenet:NAME` model spec (a zoo model with ImageNet
    weights, given by --weights), or None for anything else."""
    return text[len(IMAGENET):] if str(text).startswith(IMAGENET) else None


def check_imagenet(parser, option, name, weights):
    """Validates model spec `imagenet:NAME` given as `option` (`--from`,
    `MODEL.keras`) with `weights` (--weights); a parser error otherwise."""
    from zoo import pretrained

    models = sorted(set().union(*(source.FAMILY for source in pretrained.SOURCES.values())))
    if name not in models:
        parser.error(f"argument {option}: 'imagenet:{name}' is not accepted; expected imagenet: "
                     f"and a model with ImageNet weights: {', '.join(models)}")
    if weights is None:
        parser.error(f"{option}=imagenet:{name} needs --weights (keras, torchvision or a "
                     "weights file)")
    try:
        pretrained.check(name, weights)
    except ValueError as err:
        parser.error(f"argument --weights: {err}")


def model_file(text):
    """A trained model: a run directory (its model.keras) or a .keras file."""
    path = Path(text)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise _rejected(text, f"a run directory with {MODEL_FILE} (this one has none), or a "
                                  ".keras file")
        return path / MODEL_FILE
    if path.suffix != ".keras" or not path.is_file():
        what = "a missing file" if not path.exists() else "not a .keras file"
        raise _rejected(text, f"a .keras file or a run directory ({what})")
    return path


def key_value(text):
    """KEY=VALUE; the value is parsed as JSON (numbers, lists, true/false) or
    kept as a string (pooling=avg)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise _rejected(text, "KEY=VALUE such as zero_init_residual=true")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value
