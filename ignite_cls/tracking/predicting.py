"""The predict run: which checkpoint (and the train run that wrote it), how many inputs, and
the ``--out`` file."""

from __future__ import annotations

from ignite_cls.tracking.records import checkpoint_identity, common_params, common_tags
from ignite_cls.tracking.run import RunTracker


class PredictTracker(RunTracker):
    command = "predict"

    def start(self, checkpoint: str, train_run_id: str | None, num_inputs: int) -> None:
        """Open the run once the inputs and the checkpoint are found."""
        if not self.active:
            return
        params, tags = checkpoint_identity(checkpoint, train_run_id)
        params |= {**common_params(self.job), "dataset.predict.size": num_inputs}
        self._open(params, {**common_tags(self.job), **tags}, resume_id=None)
