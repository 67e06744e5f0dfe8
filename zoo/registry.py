"""The model registry: `register_model`, `create_model`, `list_models`."""

import fnmatch

_MODELS = {}


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


def create_model(name, **kwargs):
    """Builds a registered model; keyword arguments that are None are dropped, so
    command-line defaults never clobber a model's own defaults."""
    if name not in _MODELS:
        raise ValueError(
            f"model={name!r} is not registered; expected one of: " + ", ".join(list_models())
        )
    return _MODELS[name](**{k: v for k, v in kwargs.items() if v is not None})
