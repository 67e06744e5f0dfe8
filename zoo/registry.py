"""The model registry (`register_model`, `create_model`, `list_models`) and the
family registry (`register_family`, `get_family`, `list_families`).

A family (lenet, alexnet, vgg, googlenet, resnet) registers, beside its models,
what the application layers need to know of it as plain data: the paper's
training recipe (`TrainConfig` settings, read by `zoo.cli.train`), and its own
search space with the function that turns sampled values into a registered
model and its options (read by `zoo.search`). Adding a family touches its own
file and its test.
"""

import dataclasses
import fnmatch
from collections.abc import Callable

from zoo.contract import Classifier, InputContract
from zoo.resolve import InputShapeProbe, InputTooSmall, probing_input_shape

_MODELS = {}
_FAMILIES = {}


def register_model(fn):
    """Registers a variant function under its own name; a duplicate name raises."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def register_variant(name, model_class, doc, **defaults):
    """Registers `name` as `model_class` with `defaults`; the caller's kwargs win."""

    def build(**kwargs):
        return model_class(**{"name": name, **defaults, **kwargs})

    build.__name__, build.__doc__ = name, doc
    return register_model(build)


def list_models(pattern=None):
    """Registered names, sorted; `pattern` is a shell-style wildcard such as "resnet*"."""
    names = sorted(_MODELS)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def min_input_size(name, channels=1, **kwargs):
    """Checks `kwargs` for model `name` without building it and returns the
    smallest height and width it accepts.

    Every family validates its options before the input shape, so constructing
    the model at a 1x1 input stops at the shape check (`InputTooSmall`, which
    carries the minimum) before any layer exists; a bad option raises its own
    ValueError first.
    """
    try:
        create_model(name, **{**kwargs, "input_shape": (1, 1, channels)})
    except InputTooSmall as err:
        return err.min_size
    return 1


def default_input_shape(name, **kwargs):
    """The (height, width, channels) model `name` takes by default (with
    `kwargs`), read without building it: construction stops at the input
    shape check (`zoo.resolve.probing_input_shape`)."""
    try:
        with probing_input_shape():
            create_model(name, **kwargs)
    except InputShapeProbe as probe:
        return probe.shape
    raise ValueError(f"model={name!r} did not check its input shape")


def create_model(name, weights=None, preprocessing=None, **kwargs):
    """Builds a registered model; keyword arguments that are None are dropped, so
    command-line defaults never clobber a model's own defaults.

    Without `weights` and `preprocessing` the result is the bare network, on
    normalized images of its `input_shape`. Otherwise it is a
    `zoo.contract.Classifier` that takes raw images (uint8, or floats in 0-255)
    and carries its input contract: the weights' (their mean and std, images
    resized to the network's input, the ImageNet class names when the head is
    theirs), with `preprocessing` changing any of it.

    Args:
        name: a registered model.
        weights: None (random initialization), "keras" or "torchvision"
            (their published ImageNet weights, downloaded once), or the path of
            such a weights file; see `zoo.pretrained`.
        preprocessing: `zoo.contract.InputContract` fields (a dict): the raw
            `image_shape`, `mean`, `std` (of x / 255), `fit`, `class_names`, ...
        **kwargs: the model's options.
    """
    if name not in _MODELS:
        raise ValueError(
            f"model={name!r} is not registered; expected one of: " + ", ".join(list_models())
        )
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if preprocessing is not None and not isinstance(preprocessing, dict):
        raise ValueError(f"preprocessing={preprocessing!r} is not accepted; expected a dict of "
                         "zoo.contract.InputContract fields")
    if weights is None:
        network, defaults = _MODELS[name](**kwargs), {}
    else:
        from zoo import pretrained  # the weights converters, loaded when asked for

        network, defaults = pretrained.create(name, weights, _MODELS[name], kwargs)
    if weights is None and preprocessing is None:
        return network
    settings = {**defaults, **(preprocessing or {})}
    settings.setdefault("image_shape", tuple(network.input_shape[1:]))
    return Classifier(network, InputContract.from_config(settings))


@dataclasses.dataclass(frozen=True)
class Family:
    """What a family tells the training, search and command-line layers.

    Attributes:
        name: the family ("resnet").
        recipe: `zoo.training.TrainConfig` settings of the paper's recipe
            (epochs, optimizer, schedule, milestones in the paper's epochs, ...).
        search_space: {"full": {...}, "tiny": {...}}: the family's own
            hyperparameters per scale; a list of values is a choice ([True,
            False] an on/off switch), a dict {"low", "high", "log"} a float range.
        search_model: (scale, values) -> (registered model name, constructor
            options) for the sampled `values` of the search space.
        paper: the recipe's source, for help texts.
    """

    name: str
    recipe: dict
    search_space: dict
    search_model: Callable
    paper: str = ""


def register_family(name, recipe, search_space, search_model, paper=""):
    """Registers a family's recipe and search space; a duplicate name raises."""
    if name in _FAMILIES:
        raise ValueError(f"family {name!r} is already registered")
    if recipe.get("model") not in _MODELS:
        raise ValueError(f"family {name!r}: its recipe's model {recipe.get('model')!r} is not "
                         "registered")
    _FAMILIES[name] = Family(name, dict(recipe), search_space, search_model, paper)
    return _FAMILIES[name]


def list_families():
    """Registered family names, in registration order."""
    return list(_FAMILIES)


def get_family(name):
    """The `Family` registered as `name`."""
    if name not in _FAMILIES:
        raise ValueError(f"family={name!r} is not accepted; expected one of "
                         + ", ".join(list_families()))
    return _FAMILIES[name]
