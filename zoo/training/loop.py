"""One training run: data, model, optimizer, Keras' `fit` with callbacks, artifacts.

`train_run(config)` loads the data, builds the model, compiles it with the
named optimizer and learning-rate schedule, fits it with Keras' own callbacks
and writes the run's artifacts through `zoo.training.rundir.RunDir`. A run
killed part-way resumes where it stopped when the same command runs again with
the same `--out`. Independent ensembles (several runs) are
`zoo.training.ensemble_runs`; `zoo.training.train` picks between the two.
"""

import dataclasses
import math
import time

import keras
import numpy as np

import ensembles
from zoo.training import babysit, builder, callbacks, data as data_module, evaluate, monitors
from zoo.training.rundir import RunDir


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


def train_run(config):
    """Runs one training job described by `config` (a single model, or a
    snapshot ensemble) and writes its artifacts.

    Returns the metrics dict written to metrics.json.
    """
    config.validate()
    run = RunDir(config.out)
    if run.is_finished() and not config.overwrite:
        raise FileExistsError(
            f"out={str(run.path)!r} already holds a finished run (metrics.json); pass "
            "--overwrite to replace it or choose another --out"
        )
    resuming = run.has_resume_state()
    run.create()
    keras.utils.set_random_seed(config.seed if config.init_seed is None else config.init_seed)

    data = data_module.prepare_data(config)
    model = builder.build_model(config, data["num_classes"], data["input_shape"])
    num_train = len(data["x_train"])
    steps_per_epoch = math.ceil(num_train / config.batch_size)
    config, lr_finder = _babysit(config, data, model, run, resuming)
    builder.compile_model(model, config, steps_per_epoch)
    fit_model, fit_data = data_module.fit_inputs(config, model, data)
    if fit_model is not model:  # the on-device augmentation wrapper
        builder.compile_model(fit_model, config, steps_per_epoch)
        fit_model(data["x_train_raw"][:1])  # built before fit, as BackupAndRestore requires
    has_val = data["x_val"] is not None
    monitor = "val_loss" if has_val else "loss"

    run.write_config(
        config, num_classes=data["num_classes"], input_shape=data["input_shape"],
        normalization={"mean": data["mean"], "std": data["std"]},
        data_source=data["source"], num_train=num_train,
        num_val=len(data["x_val"]) if has_val else 0, model_config=model.get_config(),
        backend=keras.backend.backend(), keras_version=keras.__version__,
        **({"lr_finder": lr_finder} if lr_finder else {}),
    )
    if not resuming:
        run.clear_log()

    fit_callbacks = [
        callbacks.EpochStats(num_train),  # first, so the loggers below see its values
        *([monitors.make_monitor(data, model)] if config.monitor else []),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(str(run.log_path), append=True),
        # The backup comes before the EMA swap: it saves the raw weights in the
        # model and their average in the optimizer, so a resumed run continues both.
        keras.callbacks.BackupAndRestore(str(run.backup_dir)),
        *(ensembles.ema_callbacks() if config.ema else []),
        keras.callbacks.ModelCheckpoint(str(run.checkpoint_path), monitor=monitor,
                                        save_best_only=True),
    ]
    if config.ensemble == "snapshot":
        fit_callbacks.append(ensembles.SnapshotSaver(run.snapshots_dir,
                                                     config.epochs // config.members, model=model))
    if config.swa_start:
        fit_callbacks.append(ensembles.SWA(config.swa_start, bn_data=data["x_train"],
                                           state_path=run.backup_dir / "swa_state.npz",
                                           model=model))
    if config.early_stopping:
        fit_callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor,
                                                           patience=config.early_stopping))
    if config.tensorboard:
        fit_callbacks.append(keras.callbacks.TensorBoard(str(run.file("tensorboard"))))

    start = time.perf_counter()
    fit_model.fit(**fit_data, epochs=config.epochs, callbacks=fit_callbacks,
                  verbose=config.verbose)
    if config.ema:
        # fit left the averaged weights in the model, but the BatchNorm moving
        # statistics are those of the raw weights: re-estimate them.
        ensembles.recompute_batch_norm(model, data["x_train"])
    test_loss, test_accuracy, tta_accuracy = evaluate.evaluate_test(model, config, data)
    ensemble_metrics = None
    if config.ensemble == "snapshot":
        single = {"test_accuracy": test_accuracy, "test_accuracy_tta": tta_accuracy}
        model = ensembles.load_snapshot_ensemble(run.snapshots_dir, config.keep,
                                                 config.ensemble_method)
        ensemble_metrics = evaluate.summarize_ensemble(model, config, data, single)
        test_loss, test_accuracy, tta_accuracy = evaluate.evaluate_test(model, config, data)
    run.save_model(model)

    history = run.history()
    speeds = history.get("train_images_per_sec", [])
    steady = speeds[1:] or speeds  # the first epoch includes tracing/compilation
    metrics = {
        "model": config.model, "dataset": config.dataset, "data_source": data["source"],
        "epochs_completed": len(history.get("epoch", [])),
        "test_loss": float(test_loss), "test_accuracy": float(test_accuracy),
        "test_error": 1.0 - float(test_accuracy),
        "tta": config.tta, "test_accuracy_tta": tta_accuracy,
        "test_error_tta": None if tta_accuracy is None else 1.0 - tta_accuracy,
        "wall_time_s": float(sum(history.get("epoch_seconds", []))),
        "wall_time_this_process_s": time.perf_counter() - start,
        "train_images_per_sec": float(np.median(steady)) if steady else None,
        "params": model.count_params(), "num_train": num_train,
        **({"ensemble": ensemble_metrics} if ensemble_metrics else {}),
        "history": history,
    }
    run.write_metrics(metrics)
    run.plot_curves(history)
    return metrics
