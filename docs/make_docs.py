"""Regenerate docs/: run the real-data experiment (skipping finished runs) and draw the figures and tables.

    HANDIN3_DATA=../shared/data .venv/bin/python docs/make_docs.py [--pretrain-batches 5000] [--threads 1]

Results go to build/real/{mnist,fashion}.json (kept out of git, with every curve);
docs/ gets the figures (PNG), findings.md (the claims and the accuracy table) and
results_summary.json (every run's config, seed and final numbers, without the curves).
See docs/real-data-results.md for what the committed files were made with.
"""

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

KIT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT_ROOT / "solutions"))

from handin import engine, findings, plotting  # noqa: E402
from handin.data import get_dataset  # noqa: E402
from handin.training import History  # noqa: E402

DOCS = KIT_ROOT / "docs"
RESULTS = KIT_ROOT / "build" / "real"
#: (results file, D_P, every D_F): runs that differ only in D_F share their pretraining.
EXPERIMENTS = [("mnist.json", "mnist", ("mnist", "fashion-mnist")), ("fashion.json", "fashion-mnist", ("mnist",))]


def run(options):
    """Every run of the real-data experiment; finished runs are loaded from the results files."""
    records = []
    for file_name, pretrain, finetunes in EXPERIMENTS:
        config = engine.ExperimentConfig(
            pretrain_dataset=pretrain,
            finetune_datasets=finetunes,
            seeds=tuple(options.seeds),
            pretrain_batches=options.pretrain_batches,
            test_every=500,
            curve_test_images=1000,
        )
        records += engine.run_experiment(config, RESULTS / file_name)
    return records


def save(fig, name):
    fig.savefig(DOCS / name, dpi=90)
    plt.close(fig)
    print(f"wrote docs/{name}")


def draw(records):
    table = findings.accuracy_table(records)
    fig, axes = plt.subplots(1, len(table), figsize=(5.5 * len(table), 4), squeeze=False, sharey=True)
    for ax, (pair, by_augmentation) in zip(axes[0], table.items(), strict=False):
        accuracies = {
            a: {s: list(by_seed.values()) for s, by_seed in by_s.items()} for a, by_s in by_augmentation.items()
        }
        plotting.plot_accuracy_vs_samples(accuracies, title=findings.pair_name(pair), ax=ax)
    save(fig, "accuracy_vs_s.png")

    same_vs_cross = {
        findings.pair_name(pair): {s: list(by_seed.values()) for s, by_seed in by_aug["none"].items()}
        for pair, by_aug in table.items()
    }
    save(
        plotting.plot_accuracy_vs_samples(same_vs_cross, title="no augmentation: same vs cross dataset"),
        "same_vs_cross.png",
    )

    pair = ("mnist", "fashion-mnist")
    for s in (1, 64):
        for phase in ("pretrain", "finetune"):
            histories = {
                r["augmentation"]: History(**r[phase])
                for r in records
                if (r["pretrain_dataset"], r["finetune_dataset"]) == pair and r["s"] == s and r["seed"] == 0
            }
            save(
                plotting.plot_curves(
                    histories, window=50, title=f"{phase}, {findings.pair_name(pair)}, s = {s}, seed 0"
                ),
                f"curves_{phase}_s{s}.png",
            )

    subsets, _ = get_dataset("mnist", samples_per_class=(16,), download=False)
    images, labels = subsets[16].tensors
    for augmentation in ("collage", "mixup"):
        save(
            plotting.show_augmentations(images, labels, augmentation, n_classes=10, n_pairs=3, seed=0),
            f"augmentation_{augmentation}.png",
        )


def write_tables(records, options):
    settings = (
        f"{len({r['seed'] for r in records})} seeds, {options.pretrain_batches} pretraining batches, "
        f"1000 finetuning batches, batch size 8, lr 0.01, finetuning on 256 samples per class"
    )
    (DOCS / "findings.md").write_text(
        f"# Findings on the real data\n\nSettings: {settings}. Regenerate with `docs/make_docs.py` "
        f"(see docs/real-data-results.md).\n\n## Claims\n\n{findings.markdown_table(records)}\n\n"
        f"## Finetune test accuracy (mean ± 95% CI half-width over seeds)\n\n{findings.accuracy_markdown(records)}\n"
    )
    print("wrote docs/findings.md")
    summary = [
        {key: value for key, value in record.items() if key not in ("pretrain", "finetune")} for record in records
    ]
    (DOCS / "results_summary.json").write_text(json.dumps({"runs": summary}, indent=1))
    print("wrote docs/results_summary.json")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--pretrain-batches", type=int, default=5000, help="pretraining batches of every run (the assignment's 5000)"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    options = parser.parse_args(argv)
    if options.threads:
        import torch

        torch.set_num_threads(options.threads)
    records = run(options)
    draw(records)
    write_tables(records, options)
    print(findings.report(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
