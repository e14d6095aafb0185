"""One model lifecycle for every pipeline: run folders, a candidate, promotion through gates.

Under ``artifacts_dir(<pipeline>) / <model>``::

    runs/<run id>/        everything one training run wrote (checkpoints, history, plots, ...)
    latest_run.json       the last run that finished, written after it succeeded
    candidate.json        the run whose files are proposed for production, with its verdicts
    production/<run id>.<time>.<n>/  copies of a promoted candidate's files, a fresh folder each time
    production.json       which production folder is live: replaced last, in one rename

A failed or refused run writes only into its own run folder, so it never damages the files
that downstream assets or the live model point at; readers of the live model follow
``production.json`` and see the old version or the new one, never a mix. Promotion has one
rule everywhere (``core.evaluation.promotion_refusal``: beat the strongest baseline on the
test split, on every verdict recorded) plus the pipeline's own gates (ONNX parity, ...); a
refusal raises ``dg.Failure`` whose description and metadata say why, on the run and asset
pages. Every pointer goes through ``core.files.atomic_write`` (a unique temporary name,
fsync, rename), so two runs promoting at once leave one complete version.

No torch here: the Dagster modules that the code location loads import this one.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from netassets.core.evaluation import Evaluation, promotion_refusal
from netassets.core.files import copy_file, write_json
from netassets.core.settings import artifacts_dir, safe_name

# A gate returns the problems it found with a candidate (empty: it passes).
Gate = Callable[["ModelVersion"], Iterable[str]]
KEEP_PRODUCTION_VERSIONS = 3  # the live one and two before it, for a quick roll back by hand


@dataclass(frozen=True)
class ModelVersion:
    """A set of files from one training run, with the verdicts it earned on test."""

    run_id: str
    folder: Path
    files: dict[str, str]  # role ("checkpoint", "onnx", ...) -> file name inside ``folder``
    evaluations: tuple[Evaluation, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    def path(self, role: str) -> Path:
        if role not in self.files:
            raise KeyError(f"model version {self.run_id} has no {role!r} file (it has {sorted(self.files)})")
        return self.folder / self.files[role]

    @property
    def refusal(self) -> str | None:
        """Why this version may not go to production, or None (``core.evaluation``'s one rule)."""
        return next(filter(None, map(promotion_refusal, self.evaluations or (None,))), None)

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "folder": str(self.folder), "files": dict(self.files),
                "evaluations": [e.to_dict() for e in self.evaluations], "info": self.info}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelVersion":
        return cls(data["run_id"], Path(data["folder"]), dict(data["files"]),
                   tuple(Evaluation.from_dict(e) for e in data.get("evaluations", [])), dict(data.get("info", {})))


class ModelStore:
    def __init__(self, pipeline: str, model: str, produced_by: str):
        self.root = artifacts_dir(pipeline) / safe_name(model, "model name")
        self.label = f"{pipeline}/{model}"
        self.produced_by = produced_by  # the asset that trains it, named in "materialise X first"

    def run_dir(self, run_id: str) -> Path:
        folder = self.root / "runs" / safe_name(run_id, "run id")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def inside(self, relative: str, option: str) -> Path:
        """A path that a config ``option`` names (a checkpoint to start from), resolved and refused
        unless it stays inside this model's folder: no '..', no absolute path, no link out."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"{option} {relative!r} must be a path inside {self.root} (e.g. runs/<run_id>/checkpoint.pt)")
        return path

    def _read(self, name: str) -> dict[str, Any]:
        path = self.root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: materialise {self.produced_by} first")
        return json.loads(path.read_text())

    def finish_run(self, run_id: str, **info: Any) -> Path:
        """Record that ``run_id`` finished (after it succeeded); later assets read from it."""
        folder = self.run_dir(run_id)
        write_json(self.root / "latest_run.json", {"run_id": run_id, "folder": str(folder), "info": info})
        return folder

    def latest_run(self) -> Path:
        return Path(self._read("latest_run.json")["folder"])

    def propose(self, run_id: str, files: Mapping[str, str | Path], evaluations: Sequence[Evaluation] = (),
                **info: Any) -> ModelVersion:
        """Make the run's ``files`` (names inside its run folder) the candidate for production."""
        folder = self.run_dir(run_id)
        names = {role: Path(name).name for role, name in files.items()}
        missing = [str(folder / n) for n in names.values() if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{self.label} candidate from run {run_id}: missing {missing}")
        version = ModelVersion(run_id, folder, names, tuple(evaluations), info)
        write_json(self.root / "candidate.json", version.to_dict())
        return version

    def candidate(self) -> ModelVersion:
        return ModelVersion.from_dict(self._read("candidate.json"))

    def production(self) -> ModelVersion | None:
        path = self.root / "production.json"
        return ModelVersion.from_dict(json.loads(path.read_text())) if path.is_file() else None

    def refusals(self, version: ModelVersion, gates: Sequence[Gate] = ()) -> list[str]:
        problems = [version.refusal] if version.refusal else []
        for gate in gates:
            problems.extend(gate(version))
        return problems

    def promote(self, gates: Sequence[Gate] = (), version: ModelVersion | None = None, **metadata: Any) -> ModelVersion:
        """Copy the candidate (or ``version``: the one a run just trained, which a concurrent run's
        candidate.json may already have replaced) to production if it passes the rule and every
        gate; else ``dg.Failure``."""
        import dagster as dg

        candidate = version if version is not None else self.candidate()
        problems = self.refusals(candidate, gates)
        if problems:
            verdicts = {f"verdict ({e.metric})" if len(candidate.evaluations) > 1 else "verdict": e.verdict
                        for e in candidate.evaluations}
            raise dg.Failure(
                description=f"{self.label}: candidate from run {candidate.run_id} refused, production kept: "
                            + "; ".join(problems),
                metadata={"candidate_run": candidate.run_id, **verdicts, **metadata,
                          "problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems))},
            )
        # A fresh folder every time, filled under a hidden name and renamed whole: a run id promoted
        # again (a step retried, a run continued with more epochs) must not be copied over the live
        # files one by one, where a reader or a kill would meet new weights beside the old config.
        production = self.root / "production"
        staging = production / f".{candidate.run_id}.{uuid.uuid4().hex}.partial"
        try:
            for name in candidate.files.values():
                copy_file(candidate.folder / name, staging / name)
            target = production / f"{candidate.run_id}.{time.strftime('%Y%m%dT%H%M%S')}.{uuid.uuid4().hex[:8]}"
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        live = ModelVersion(candidate.run_id, target, candidate.files, candidate.evaluations, candidate.info)
        write_json(self.root / "production.json", live.to_dict())
        self._prune()
        return live

    def _prune(self) -> None:
        """Keep the live folder (read again: a concurrent promotion may have moved it) and the
        newest others, up to KEEP_PRODUCTION_VERSIONS; never a folder being filled."""
        live = self.production()
        folders = []
        for folder in (self.root / "production").iterdir():
            try:
                if folder.is_dir() and not folder.name.startswith("."):
                    folders.append((folder.stat().st_mtime, folder))
            except FileNotFoundError:  # pruned by a concurrent promotion meanwhile
                continue
        keep = {live.folder} if live is not None else set()
        older = [folder for _, folder in sorted(folders, reverse=True) if folder not in keep]
        for old in older[KEEP_PRODUCTION_VERSIONS - len(keep):]:
            shutil.rmtree(old, ignore_errors=True)
