"""One training run, as four phases: prepare the data, build and compile, fit, finish.

    train_run(config)
      prepare(config)                 the data, the run's image size
      build(run, config, data, ...)   the model, the LR finder and checks, compile,
                                      the fit inputs, the resume state, config.json
      fit(state)                      Keras' `fit` with the core's and the methods' callbacks
      finish(state)                   test figures, the methods' finished model,
                                      model.keras, plots, metrics.json (the commit point)

The training methods (snapshot and independent ensembles, EMA, SWA,
distillation, temperature scaling) plug into these phases through their hooks
(`zoo.training.methods`). A run killed part-way resumes where it stopped when
the same command runs again with the same `--out`.
"""

import dataclasses
import math
import time

import keras
import numpy as np

from zoo.training import babysit, builder, callbacks, evaluate, methods, monitors
from zoo.training import data as data_module
from zoo.training.methods import RunState
from zoo.training.rundir import RunDir


def train_run(config):
    """Runs one training job described by `config` (a single model, or a
    snapshot ensemble) and writes its artifacts.

    Returns the metrics dict written to metrics.json.
    """
    config.validate()
    run = RunDir(config.out)
    run.check_start(config.overwrite)
    keras.utils.set_random_seed(config.seed if config.init_seed is None else config.init_seed)
    # Everything that can fail on a bad setting comes before the first write.
    data, config = prepare(config)
    model = builder.build_classifier(config, data)
    with run.lock():
        resuming = run.start(config.overwrite)
        if resuming:
            run.check_resumable(config)
        state = build(run, config, data, model, resuming)
        start = time.perf_counter()
        fit(state)
        return finish(state, {"wall_time_this_process_s": time.perf_counter() - start})


def prepare(config):
    """Phase 1, the data (`data.prepare_data`), and the config with the side
    images are fitted to: a setting of the run that config.json records and a
    resume must match (the model's minimum when the images are smaller)."""
    data = data_module.prepare_data(config)
    return data, dataclasses.replace(config, image_size=data["image_size"])


def build(run, config, data, model, resuming):
    """Phase 2: `--lr find` and `--check` (`babysit`), the model compiled with
    the methods' schedule and optimizer, the fit inputs (a pipeline, an
    on-device augmenter) and the methods' own (a distiller), the resume state
    restored, config.json written. Returns the `RunState`."""
    steps_per_epoch = math.ceil(len(data["x_train"]) / config.batch_size)
    config, lr_finder = _babysit(config, data, model, run, resuming)

    def compile(net):
        builder.compile_model(net, config, steps_per_epoch, methods)

    compile(model)
    fit_model, fit_data = data_module.fit_inputs(config, model, data)
    if fit_model is not model:  # the on-device augmentation wrapper
        compile(fit_model)
        fit_model(data_module.head(data, "train", 1)[0])  # built before its weights are restored
    state = RunState(config, data, run, model, compile, fit_model, fit_data, steps_per_epoch)
    for method in methods.active(config):
        method.prepare_fit(state)
    state.extras["backup"] = backup = callbacks.RunBackup(run.backup_dir, run.path)
    state.extras["initial_epoch"] = initial_epoch = backup.restore(state.fit_model)
    if initial_epoch:
        run.trim_log(initial_epoch)
    else:
        run.clear_log()
    has_val = data["x_val"] is not None
    run.write_config(
        config, num_classes=data["num_classes"], input_shape=data["input_shape"],
        contract=data["contract"].to_config(), data_source=data["source"],
        num_train=len(data["x_train"]), num_val=len(data["x_val"]) if has_val else 0,
        model_config=model.network.get_config(), backend=keras.backend.backend(),
        keras_version=keras.__version__, **({"lr_finder": lr_finder} if lr_finder else {}))
    return state


def _babysit(config, data, model, run, resuming):
    """`--lr find`: runs the LR range test (or reuses a resumed run's result);
    `--check`: runs the sanity checks at that learning rate and stops on a
    failure. Returns the config with a numeric lr and the finder's summary
    (None without `--lr find`)."""
    summary = None
    if config.lr == "find":
        previous = run.read_config() if resuming else None
        if previous and "lr_finder" in previous:
            summary = previous["lr_finder"]
        else:
            plot = run.file("lr_finder.png")
            summary = babysit.find_lr(model, data["x_train"], data["y_train"], config,
                                      plot_path=plot).summary()
            summary["plot"] = plot.name
        print(f"lr finder: suggested lr {summary['suggested_lr']:.3g} "
              f"(lowest smoothed loss at {summary['min_loss_lr']:.3g})")
        config = dataclasses.replace(config, lr=summary["suggested_lr"])
    if config.check:
        babysit.raise_on_failure(babysit.run_checks(config, data))
    return config, summary


def fit(state):
    """Phase 3: Keras' `fit` with the core's callbacks (statistics, the log,
    the resume backup, the best checkpoint) and the methods' around them."""
    config, data, run, model = state.config, state.data, state.run, state.model
    monitor = "val_loss" if data["x_val"] is not None else "loss"
    slots = {"start": [], "after_backup": [], "end": []}
    for method in methods.active(config):
        for slot, found in method.callbacks(state).items():
            slots[slot] += found
    fit_callbacks = [
        *slots["start"],
        callbacks.EpochStats(len(data["x_train"])),  # before the loggers, which see its values
        *([monitors.make_monitor(data, model)] if config.monitor else []),
        keras.callbacks.TerminateOnNaN(),
        callbacks.RunLog(run.log_path),
        state.extras["backup"],
        *slots["after_backup"],
        callbacks.BestCheckpoint(run.checkpoint_path, monitor=monitor, model=model,
                                 state_path=run.backup_dir / "best.json"),
        *slots["end"],
    ]
    if config.early_stopping:
        fit_callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor,
                                                           patience=config.early_stopping))
    if config.tensorboard:
        fit_callbacks.append(keras.callbacks.TensorBoard(str(run.file("tensorboard"))))
    state.fit_model.fit(**state.fit_data, epochs=config.epochs,
                        initial_epoch=state.extras["initial_epoch"], callbacks=fit_callbacks,
                        verbose=config.verbose)
    # The backup stays until metrics.json is written: a kill from here on resumes
    # after the last epoch instead of restarting the training.
    for method in methods.active(config):
        method.after_fit(state)


def finish(state, facts=None):
    """Phase 4, the same for a single run and an ensemble of runs: the test
    figures of the trained model (unless the state has them), the methods'
    finished model (an ensemble, a temperature), then model.keras, the plots
    and metrics.json, written last: the commit point. `facts` are metrics
    entries the caller knows (wall times). Returns the metrics."""
    config, data, run = state.config, state.data, state.run
    if state.figures is None:
        state.figures, state.probs = evaluate.evaluate_test(state.model, config, data)
    for method in methods.active(config):
        method.finish(state)
    run.save_model(state.model)
    history = run.history()
    run.plot_curves(history)
    run.plot_reliability(evaluate.reliability_curves(data, state.probs, state.member_probs,
                                                     state.calibrated_probs))
    speeds = history.get("train_images_per_sec", [])
    steady = speeds[1:] or speeds  # the first epoch includes tracing/compilation
    metrics = {
        "model": config.model, "dataset": config.dataset, "data_source": data["source"],
        **({"epochs_completed": len(history.get("epoch", []))} if history else {}),
        **state.figures,
        "wall_time_s": float(sum(history.get("epoch_seconds", []))),
        "train_images_per_sec": float(np.median(steady)) if steady else None,
        "params": state.model.count_params(), "num_train": len(data["x_train"]),
        **(facts or {}), **state.report,
        **({"history": history} if history else {}),
    }
    run.write_metrics(metrics)  # the commit point: the run is finished
    run.finish()
    return metrics
