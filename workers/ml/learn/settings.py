"""Training settings of the learning blocks and the errors for bad learning parameters."""

from __future__ import annotations

from dataclasses import dataclass, fields

AUGMENTATIONS = ("none", "noise", "audio-noise", "image-flip")


class LearnParamError(ValueError):
    """A learning parameter or training input is out of range; the message names it."""


class TrainingCancelled(RuntimeError):
    """Training stopped because the caller's ``should_stop`` returned True."""


@dataclass(frozen=True)
class TrainSettings:
    """How a learning block trains.

    Ranges: epochs 1..1000; learning_rate (0, 1]; batch_size 1..4096;
    validation_split [0, 0.5] (0 = no validation set, metrics then come from the
    training set); seed >= 0; early_stopping_patience 0..1000 (0 = off);
    augmentation one of ``AUGMENTATIONS``:
    "noise"/"audio-noise" add Gaussian noise of 0.1 feature-std to each batch,
    "image-flip" mirrors images left-right (needs a 2-D/3-D input_shape).
    """

    epochs: int = 30
    learning_rate: float = 0.005
    batch_size: int = 32
    validation_split: float = 0.2
    class_balancing: bool = False
    seed: int = 1
    early_stopping_patience: int = 0
    augmentation: str = "none"

    def validate(self) -> TrainSettings:
        checks = {
            "epochs": isinstance(self.epochs, int) and 1 <= self.epochs <= 1000,
            "learning_rate": isinstance(self.learning_rate, (int, float))
            and 0 < self.learning_rate <= 1,
            "batch_size": isinstance(self.batch_size, int) and 1 <= self.batch_size <= 4096,
            "validation_split": isinstance(self.validation_split, (int, float))
            and 0 <= self.validation_split <= 0.5,
            "class_balancing": isinstance(self.class_balancing, bool),
            "seed": isinstance(self.seed, int) and self.seed >= 0,
            "early_stopping_patience": isinstance(self.early_stopping_patience, int)
            and 0 <= self.early_stopping_patience <= 1000,
            "augmentation": self.augmentation in AUGMENTATIONS,
        }
        for f in fields(self):
            if not checks[f.name]:
                raise LearnParamError(
                    f"TrainSettings.{f.name} out of range: {getattr(self, f.name)!r}"
                    + (f" (one of {', '.join(AUGMENTATIONS)})" if f.name == "augmentation" else "")
                )
        return self
