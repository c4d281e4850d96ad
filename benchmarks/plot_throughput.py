"""Plot samples/s by batch size and model shape from the JSON lines `finetune_throughput.py` printed last.

    python benchmarks/plot_throughput.py benchmarks/results/throughput-cpu.jsonl benchmarks/results/throughput-cpu.png
"""

import json
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(source: str, target: str) -> None:
    results = [json.loads(line) for line in open(source) if line.strip()]
    by_model = defaultdict(list)
    for result in results:
        by_model[result["model"]].append(result)
    figure, axes = plt.subplots(1, len(by_model), figsize=(5 * len(by_model), 3.6), constrained_layout=True, squeeze=False)
    for axis, (model, rows) in zip(axes[0], by_model.items()):
        rows.sort(key=lambda row: row["batch_size"])
        positions = range(len(rows))
        width = 0.38
        axis.bar([p - width / 2 for p in positions], [r["hf_trainer_samples_per_s"] for r in rows], width, label="HF Trainer")
        axis.bar([p + width / 2 for p in positions], [r["project_samples_per_s"] for r in rows], width, label="this project")
        for position, row in zip(positions, rows):
            axis.annotate(f"×{row['ratio']:.2f}", (position + width / 2, row["project_samples_per_s"]), ha="center", va="bottom")
        axis.set(xticks=list(positions), xticklabels=[str(r["batch_size"]) for r in rows], xlabel="batch size",
                 ylabel="samples/s", title=f"{model} — {rows[0]['device']}")
        axis.set_ylim(0, 1.2 * max(r["project_samples_per_s"] for r in rows))
        axis.legend(loc="lower right")
    figure.savefig(target, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:3])
