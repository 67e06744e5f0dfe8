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
from zoo.training import rundir
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
    run.check_start(config.overwrite)
    keras.utils.set_random_seed(config.seed if config.init_seed is None else config.init_seed)
    # Everything that can fail on a bad setting comes before the first write.
    data = data_module.prepare_data(config)
    # The side images were padded to (the model's minimum when they were smaller)
    # is a setting of the run: config.json records it and a resume must match it.
    config = dataclasses.replace(config, image_size=data["image_size"])
    model = builder.build_classifier(config, data)
    with run.lock():
        resuming = run.start(config.overwrite)
        if resuming:
            run.check_resumable(config)
        return _train_in(run, config, data, model, resuming)


def _train_in(run, config, data, model, resuming):
    num_train = len(data["x_train"])
    steps_per_epoch = math.ceil(num_train / config.batch_size)
    config, lr_finder = _babysit(config, data, model, run, resuming)
    builder.compile_model(model, config, steps_per_epoch)
    fit_model, fit_data = data_module.fit_inputs(config, model, data)
    if fit_model is not model:  # the on-device augmentation wrapper
        builder.compile_model(fit_model, config, steps_per_epoch)
        fit_model(data_module.head(data, "train", 1)[0])  # built before its weights are restored
    teacher = None
    if config.distill_from:
        fit_model, fit_data, teacher = _distiller(config, model, data, fit_data, steps_per_epoch)
    has_val = data["x_val"] is not None
    monitor = "val_loss" if has_val else "loss"
    backup = callbacks.RunBackup(run.backup_dir, run.path)
    initial_epoch = backup.restore(fit_model)
    if initial_epoch:
        run.trim_log(initial_epoch)
    else:
        run.clear_log()

    run.write_config(
        config, num_classes=data["num_classes"], input_shape=data["input_shape"],
        contract=data["contract"].to_config(), data_source=data["source"], num_train=num_train,
        num_val=len(data["x_val"]) if has_val else 0, model_config=model.network.get_config(),
        backend=keras.backend.backend(), keras_version=keras.__version__,
        **({"lr_finder": lr_finder} if lr_finder else {}),
    )

    fit_callbacks = [
        callbacks.EpochStats(num_train),  # first, so the loggers below see its values
        *([monitors.make_monitor(data, model)] if config.monitor else []),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(str(run.log_path), append=True),
        # The backup comes before the EMA swap: it saves the raw weights in the
        # model and their average in the optimizer, so a resumed run continues both.
        backup,
        *(ensembles.ema_callbacks() if config.ema else []),
        callbacks.BestCheckpoint(run.checkpoint_path, monitor=monitor, model=model,
                                 state_path=run.backup_dir / "best.json"),
    ]
    if config.ensemble == "snapshot":
        epochs_per_cycle = config.epochs // config.members
        fit_callbacks.insert(0, ensembles.CyclicCosine(config.lr, epochs_per_cycle))
        fit_callbacks.append(ensembles.SnapshotSaver(run.snapshots_dir, epochs_per_cycle,
                                                     model=model))
    if config.swa_start:
        fit_callbacks.append(ensembles.SWA(config.swa_start,
                                           bn_data=data_module.batch_norm_images(data),
                                           state_path=run.backup_dir / "swa_state.npz",
                                           model=model))
    if config.early_stopping:
        fit_callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor,
                                                           patience=config.early_stopping))
    if config.tensorboard:
        fit_callbacks.append(keras.callbacks.TensorBoard(str(run.file("tensorboard"))))

    start = time.perf_counter()
    fit_model.fit(**fit_data, epochs=config.epochs, initial_epoch=initial_epoch,
                  callbacks=fit_callbacks, verbose=config.verbose)
    # The backup stays until metrics.json is written: a kill from here on resumes
    # after the last epoch instead of restarting the training.
    if config.ema:
        # fit left the averaged weights in the model, but the BatchNorm moving
        # statistics are those of the raw weights: re-estimate them.
        ensembles.recompute_batch_norm(model, data_module.batch_norm_images(data))
    figures, probs = evaluate.evaluate_test(model, config, data)
    ensemble_metrics = member_probs = None
    if config.ensemble == "snapshot":
        member_probs = probs  # the last snapshot, as a single model
        model = ensembles.load_snapshot_ensemble(run.snapshots_dir, config.keep,
                                                 config.ensemble_method)
        ensemble_metrics = evaluate.summarize_ensemble(model, config, data, figures)
        figures, probs = evaluate.evaluate_test(model, config, data)
    calibration = calibrated_probs = None
    if config.calibrate:
        model, calibration, calibrated_probs = evaluate.calibrate(model, config, data, probs)
        figures, _ = evaluate.evaluate_test(model, config, data, probs=calibrated_probs)
    run.save_model(model)

    history = run.history()
    run.plot_curves(history)
    run.plot_reliability(evaluate.reliability_curves(data, probs, member_probs,
                                                     calibrated_probs))
    speeds = history.get("train_images_per_sec", [])
    steady = speeds[1:] or speeds  # the first epoch includes tracing/compilation
    metrics = {
        "model": config.model, "dataset": config.dataset, "data_source": data["source"],
        "epochs_completed": len(history.get("epoch", [])),
        **figures,
        "wall_time_s": float(sum(history.get("epoch_seconds", []))),
        "wall_time_this_process_s": time.perf_counter() - start,
        "train_images_per_sec": float(np.median(steady)) if steady else None,
        "params": model.count_params(), "num_train": num_train,
        **({"ensemble": ensemble_metrics} if ensemble_metrics else {}),
        **({"calibration": calibration} if calibration else {}),
        **({"distillation": _teacher_report(config, teacher, data)} if teacher else {}),
        "history": history,
    }
    run.write_metrics(metrics)  # the commit point: the run is finished
    run.finish()
    return metrics


def _distiller(config, model, data, fit_data, steps_per_epoch):
    """`ensembles.Distiller` around the student, compiled as the run asks; with
    plain arrays the teacher's probabilities are computed once and appended to
    the labels, with an augmentation pipeline the teacher sees every batch.
    The teacher carries its own input contract (any normalization or size)."""
    teacher = rundir.load_model(config.distill_from)
    distiller = ensembles.Distiller(model, teacher, config.distill_temperature,
                                    config.distill_hard_weight, name=f"{model.name}_distiller")
    builder.compile_model(distiller, config, steps_per_epoch)
    if fit_data.get("y") is not None:
        soft = teacher.predict(fit_data["x"], batch_size=256, verbose=0)
        fit_data = {**fit_data, "y": np.concatenate([fit_data["y"], soft], axis=1)}
    return distiller, fit_data, teacher


def _teacher_report(config, teacher, data):
    probs = data_module.predict(teacher, data, "test")
    return {"teacher": str(config.distill_from), "temperature": config.distill_temperature,
            "hard_weight": config.distill_hard_weight,
            "teacher_test": ensembles.metrics.scores(probs, data["y_test"])}
