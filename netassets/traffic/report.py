"""The training report (written by train.py's rank 0) as asset metadata: validation scores and
the seed's plots. The test verdict comes from the report's ``evaluation`` (``core.evaluation``)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np

from netassets.core.plots import figure_metadata, plt, table_markdown


def validation_table(report: dict) -> dg.MetadataValue:
    """The best epoch and persistence on the validation flows (which chose that epoch): a
    selection figure, not the verdict."""
    names = {"model": f"{report['evaluation']['model']} (epoch {report['best_epoch']})",
             "persistence": "persistence (next = current)"}
    rows = [{"scorer": names[key], "split": "val", "cos mean": scores["cos_mean"], "cos median": scores["cos_median"],
             "cos packet 1": scores["cos_first_packet"], "MSE": scores["mse"]}
            for key, scores in report["val"].items()]
    return table_markdown(rows)


def plots(report: dict, folder: Path) -> dict[str, dg.MetadataValue]:
    history = report["history"]
    epochs = [h["epoch"] for h in history]
    val_persistence = report["val"]["persistence"]

    loss, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [h["train_mse"] for h in history], marker="o", label="training")
    ax.plot(epochs, [h["val_mse"] for h in history], marker="o", label="validation")
    ax.set(xlabel="epoch", ylabel="masked MSE (normalised features)", title="Loss")
    ax.legend()

    cosine, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [h["val_cos_mean"] for h in history], marker="o", label="LSTM mean")
    ax.plot(epochs, [h["val_cos_median"] for h in history], marker="o", label="LSTM median")
    ax.axhline(val_persistence["cos_mean"], linestyle="--", color="grey", label="persistence mean")
    ax.set(xlabel="epoch", ylabel="cosine similarity per flow", title="Validation cosine similarity")
    ax.legend()

    position, ax = plt.subplots(figsize=(6, 3.5))
    for name, curve in report["test_cos_by_position"].items():
        curve = np.array([np.nan if v is None else v for v in curve])
        ax.plot(np.arange(1, len(curve) + 1), curve, label=name)
    ax.set(xlabel="packet position in flow", ylabel="mean cosine similarity",
           title=f"Test flows: similarity by packet position (best epoch {report['best_epoch']})")
    ax.legend()

    figures = {"loss_curves": loss, "val_cosine_over_epochs": cosine, "test_cosine_by_position": position}
    return {key: value for name, figure in figures.items()
            for key, value in figure_metadata(name, figure, save_to=folder / f"{name}.png").items()}
