"""Training configs written once: a pydantic model per trainer, read by the asset and the workers.

Each trainer declares ``class TrainConfig(TrainingConfig)`` in its pipeline's light
``config.py`` (no torch: the Dagster modules import it), every field with its bounds and a
``Field(description=...)`` that the Launchpad shows. The asset's config inherits it::

    class PatchTSTRunConfig(TrainConfig, dg.Config):   # + fields only the asset needs (nproc, ...)

and hands the training fields to torchrun as one JSON file (``write``); the worker reads that
file with the same model (``read``), so a value is parsed and bounded once, by one parser.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from netassets.core.files import write_json

T = TypeVar("T", bound="TrainingConfig")


class TrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @classmethod
    def of(cls: type[T], config: BaseModel) -> T:
        """The training fields of a larger config (an asset's ``dg.Config`` that inherits ``cls``)."""
        return cls.model_validate({name: getattr(config, name) for name in cls.model_fields})

    def write(self, path: Path) -> Path:
        return write_json(path, self.model_dump(mode="json"))

    @classmethod
    def read(cls: type[T], path: Path) -> T:
        try:
            return cls.model_validate_json(Path(path).read_text())
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"{path}: invalid {cls.__name__}: {problems}") from None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
