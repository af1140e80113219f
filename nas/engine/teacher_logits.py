"""The distillation targets of a study: the cached float teacher's logits on the train split
(and, for the final stage's other folds, on train + validation).

Computed (or loaded from the teacher cache) once per process and only when the study distils;
the worker loop, the exporter's fine-tuning and the benchmarks ask here instead of each building
the teacher config themselves."""

from __future__ import annotations


class TeacherLogits:
    def __init__(self, study, device: str | None = None) -> None:
        self.study = study
        self.device = device or study.cfg.study.device
        self._logits = None
        self._teacher = None

    def __call__(self, on_epoch=None):
        """The logits; `on_epoch(epoch, val_metrics)` hears the teacher's epochs if it trains now."""
        cfg = self.study.cfg
        if not cfg.training.distill:
            return None
        if self._logits is None:
            from nas.train.teacher import get_teacher

            teacher = get_teacher(
                self.study.dataset,
                cfg.teacher.teacher_config(cfg.training.batch_size),
                seed=cfg.study.seed,
                device=self.device,
                threads=cfg.study.threads,
                on_epoch=on_epoch,
            )
            self._teacher = teacher
            self._logits = teacher.train_logits
        return self._logits

    def pool_logits(self):
        """Logits on train + validation, in that order (None when the study does not distil): a
        final-stage fold trains on some validation samples, where the teacher's output is its
        prediction on data it was not fitted to, as it is for any new sample."""
        train = self()
        if train is None:
            return None
        import numpy as np

        from nas.train import predict_logits

        val = predict_logits(
            self._teacher.load_model(self.device),
            self.study.dataset.val.x,
            device=self.device,
            threads=self.study.cfg.study.threads,
        )
        return np.concatenate([train, val]).astype(np.float32, copy=False)


def teacher_logits(study, device: str | None = None):
    """The study's teacher logits (None when it does not distil)."""
    return TeacherLogits(study, device)()
