"""Snapshot ensembles (Huang et al. 2017): M cosine cycles in one run, a snapshot
at the end of each, the last m combined (`--ensemble snapshot --members M`)."""

import ensembles
from zoo import resolve
from zoo.training import evaluate
from zoo.training.methods.base import Method


class Snapshot(Method):
    name = "snapshot"

    def active(self, config):
        return config.ensemble == "snapshot"

    def validate(self, config):
        if not self.active(config):
            if config.keep is not None:
                raise resolve.bad_option("keep", config.keep, "None unless ensemble='snapshot'")
            return
        ensembles.snapshot.check_cycles(config.epochs, config.members, config.keep)
        if config.swa_start is not None:
            raise resolve.bad_option("swa_start", config.swa_start,
                                     "None with ensemble='snapshot' (both set the schedule)")
        if config.warmup_epochs:
            raise resolve.bad_option("warmup_epochs", config.warmup_epochs,
                                     "0 with ensemble='snapshot' (cycles start at the top)")

    def schedule(self, config, schedule, steps_per_epoch):
        # The cycles' rate is set before every step by `CyclicCosine`.
        return config.lr

    def callbacks(self, state):
        cycle = state.config.epochs // state.config.members
        return {"start": [ensembles.CyclicCosine(state.config.lr, cycle)],
                "end": [ensembles.SnapshotSaver(state.run.snapshots_dir, cycle,
                                                model=state.model)]}

    def finish(self, state):
        """The last snapshot is the single model; the run's model is the
        ensemble of the last `keep` snapshots."""
        config = state.config
        state.member_probs = state.probs
        single = state.figures
        state.model = ensembles.load_snapshot_ensemble(state.run.snapshots_dir, config.keep,
                                                       config.ensemble_method)
        state.report["ensemble"] = evaluate.summarize_ensemble(state.model, config, state.data,
                                                               single)
        state.figures, state.probs = evaluate.evaluate_test(state.model, config, state.data)
