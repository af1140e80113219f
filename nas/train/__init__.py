"""Training one candidate: quantization-aware training with distillation (`trainer`), the cached
float teacher whose logits it distils (`teacher`), and the metrics a study can optimize (`metrics`).
Used by the engine, the exporter's fine-tuning and `m2nas train`, so all three train alike."""

from .metrics import BASE_METRICS, classification_metrics, metric_names
from .teacher import Teacher, TeacherConfig, get_teacher, teacher_arch
from .trainer import (
    SCHEDULES,
    TrainConfig,
    TrainingFailed,
    TrainResult,
    check_arch_matches,
    distillation_loss,
    evaluate_model,
    load_trained,
    predict_logits,
    resolve_device,
    stratified_subset,
    train_candidate,
)

__all__ = [
    "BASE_METRICS",
    "SCHEDULES",
    "Teacher",
    "TeacherConfig",
    "TrainConfig",
    "TrainResult",
    "TrainingFailed",
    "check_arch_matches",
    "classification_metrics",
    "distillation_loss",
    "evaluate_model",
    "get_teacher",
    "load_trained",
    "metric_names",
    "predict_logits",
    "resolve_device",
    "stratified_subset",
    "teacher_arch",
    "train_candidate",
]
