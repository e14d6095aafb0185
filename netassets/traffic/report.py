"""The training report (written by train.py's rank 0) as asset metadata: scores and the seed's plots."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np

from netassets.core.plots import figure_metadata, plt, table_markdown


def score_table(report: dict) -> dg.MetadataValue:
    rows = []
    for name, scores in (("next-packet LSTM", report["model"]), ("persistence (next = current)", report["persistence"])):
        rows.append({"predictor": name, "val cos mean": scores["cos_mean"], "val cos median": scores["cos_median"],
                     "cos packet 1": scores["cos_first_packet"], "val MSE": scores["mse"]})
    return table_markdown(rows)


def plots(report: dict, folder: Path) -> dict[str, dg.MetadataValue]:
    history = report["history"]
    epochs = [h["epoch"] for h in history]
    persistence = report["persistence"]

    loss, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [h["train_mse"] for h in history], marker="o", label="training")
    ax.plot(epochs, [h["val_mse"] for h in history], marker="o", label="validation")
    ax.set(xlabel="epoch", ylabel="masked MSE (normalised features)", title="Loss")
    ax.legend()

    cosine, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(epochs, [h["val_cos_mean"] for h in history], marker="o", label="LSTM mean")
    ax.plot(epochs, [h["val_cos_median"] for h in history], marker="o", label="LSTM median")
    ax.axhline(persistence["cos_mean"], linestyle="--", color="grey", label="persistence mean")
    ax.set(xlabel="epoch", ylabel="cosine similarity per flow", title="Validation cosine similarity")
    ax.legend()

    position, ax = plt.subplots(figsize=(6, 3.5))
    for label, scores in (("LSTM (best epoch)", report["model"]), ("persistence", persistence)):
        curve = np.array([np.nan if v is None else v for v in scores["cos_by_position"]])
        ax.plot(np.arange(1, len(curve) + 1), curve, label=label)
    ax.set(xlabel="packet position in flow", ylabel="mean cosine similarity", title="Similarity by packet position")
    ax.legend()

    return {
        "loss_curves": figure_metadata(loss, save_to=folder / "loss_curves.png"),
        "cosine_over_epochs": figure_metadata(cosine, save_to=folder / "cosine_over_epochs.png"),
        "cosine_by_position": figure_metadata(position, save_to=folder / "cosine_by_position.png"),
    }
