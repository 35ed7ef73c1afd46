"""Test the assignment's four claims on saved results, over seeds.

Every claim is a set of *paired comparisons*: for each seed, the difference of two
accuracies (or of two averages of accuracies) that should be positive if the claim
is right. Over the seeds, a comparison

* **holds** when the whole 95% confidence interval of the mean difference is above 0,
* **does not hold** when it is below 0 (the opposite is true),
* is **inconclusive** otherwise (too few seeds, or too small an effect).

A claim holds when all its comparisons hold, does not hold when one of them does
not, and is inconclusive otherwise. The claims:

(a) finetune accuracy rises with s: accuracy at the largest s minus at the smallest s,
    per dataset pair and augmentation;
(b) augmentation helps most for small s and the benefit fades by s≈32: the benefit
    (mean of collage and mixup minus none) averaged over s <= 4 is positive, larger
    than averaged over s >= 32, and the latter is below 1 percentage point;
(c) collage beats mixup for s in 1-16, and mixup beats collage for s in 32-64;
(d) pretraining and finetuning on the same dataset beats a cross-dataset pair: for a
    finetuning dataset X, X→X against Y→X (same test set), averaged over augmentations and s.

Run ``python -m handin.findings RESULTS.json [MORE.json ...]``.
"""
import argparse
import sys
from dataclasses import dataclass

import numpy as np

from .engine import load_results
from .plotting import mean_and_interval

SMALL_S = (1, 2, 4)
LARGE_S = (32, 64)
COLLAGE_S = (1, 2, 4, 8, 16)
MIXUP_S = (32, 64)
#: (b): the benefit of augmentation has "faded" when it is below this accuracy difference.
FADED = 0.01
PRETTY = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST", "emnist": "EMNIST"}


def pair_name(pair):
    """``("mnist", "fashion-mnist")`` -> ``"MNIST→Fashion-MNIST"``."""
    return "→".join(PRETTY.get(name, name) for name in pair)


def accuracy_table(records):
    """Finetune test accuracies by dataset pair, augmentation, s and seed.

    Returns:
        dict ``{(D_P, D_F): {augmentation: {s: {seed: accuracy}}}}``.
    """
    table = {}
    for record in records:
        pair = (record["pretrain_dataset"], record["finetune_dataset"])
        by_seed = table.setdefault(pair, {}).setdefault(record["augmentation"], {}).setdefault(record["s"], {})
        by_seed[record["seed"]] = record["finetune_test_accuracy"]
    return table


def per_seed(by_s, samples):
    """Mean accuracy over ``samples`` for every seed that has all of them: ``{seed: value}``."""
    available = [by_s[s] for s in samples if s in by_s]
    if len(available) != len(samples):
        return {}
    seeds = set.intersection(*(set(seeds) for seeds in available))
    return {seed: float(np.mean([by_seeds[seed] for by_seeds in available])) for seed in seeds}


@dataclass
class Comparison:
    """One paired comparison: ``differences`` are per seed; positive supports the claim."""
    label: str
    differences: list
    threshold: float = 0.0

    def verdict(self):
        """"holds", "does not hold" or "inconclusive" from the 95% interval of the mean."""
        if len(self.differences) < 2:
            return "inconclusive"
        mean, half_width = mean_and_interval(self.differences)
        if mean - half_width > self.threshold:
            return "holds"
        if mean + half_width < self.threshold:
            return "does not hold"
        return "inconclusive"

    def text(self):
        if not self.differences:
            return f"{self.label}: no data"
        mean, half_width = mean_and_interval(self.differences)
        bound = f" (needs > {self.threshold:+.3f})" if self.threshold else ""
        return (f"{self.label}: {mean:+.3f} ± {half_width:.3f} over {len(self.differences)} seeds{bound}"
                f" -> {self.verdict()}")


def difference(a, b, label, threshold=0.0):
    """The comparison of ``a - b`` over the seeds both have (``a``, ``b``: ``{seed: value}``)."""
    seeds = sorted(set(a) & set(b))
    return Comparison(label, [a[seed] - b[seed] for seed in seeds], threshold)


def claim_a(table):
    comparisons = []
    for pair, by_augmentation in table.items():
        for augmentation, by_s in by_augmentation.items():
            smallest, largest = min(by_s), max(by_s)
            if smallest == largest:
                continue
            comparisons.append(difference(per_seed(by_s, [largest]), per_seed(by_s, [smallest]),
                                          f"{pair_name(pair)} {augmentation}: acc(s={largest}) - acc(s={smallest})"))
    return comparisons


def benefit(by_augmentation, samples):
    """Per seed: mean over collage and mixup of (augmented - none), averaged over ``samples``."""
    none = per_seed(by_augmentation.get("none", {}), samples)
    augmented = [per_seed(by_augmentation.get(name, {}), samples) for name in ("collage", "mixup")]
    seeds = set(none).intersection(*augmented)
    return {seed: float(np.mean([values[seed] for values in augmented])) - none[seed] for seed in seeds}


def claim_b(table):
    comparisons = []
    for pair, by_augmentation in table.items():
        small, large = benefit(by_augmentation, SMALL_S), benefit(by_augmentation, LARGE_S)
        name = pair_name(pair)
        zero = {seed: 0.0 for seed in small}
        comparisons += [
            difference(small, zero, f"{name}: benefit for s<=4"),
            difference(small, large, f"{name}: benefit for s<=4 minus benefit for s>=32"),
            difference({seed: -value for seed, value in large.items()}, {seed: -FADED for seed in large},
                       f"{name}: {FADED} minus benefit for s>=32 (faded)"),
        ]
    return comparisons


def claim_c(table):
    comparisons = []
    for pair, by_augmentation in table.items():
        collage, mixup = by_augmentation.get("collage", {}), by_augmentation.get("mixup", {})
        name = pair_name(pair)
        comparisons += [
            difference(per_seed(collage, COLLAGE_S), per_seed(mixup, COLLAGE_S),
                       f"{name}: collage - mixup for s in 1-16"),
            difference(per_seed(mixup, MIXUP_S), per_seed(collage, MIXUP_S),
                       f"{name}: mixup - collage for s in 32-64"),
        ]
    return comparisons


def overall(table, pair):
    """Per seed: accuracy of a pair averaged over every augmentation and s."""
    by_augmentation = table[pair]
    parts = [per_seed(by_s, sorted(by_s)) for by_s in by_augmentation.values()]
    seeds = set.intersection(*(set(part) for part in parts)) if parts else set()
    return {seed: float(np.mean([part[seed] for part in parts])) for seed in seeds}


def claim_d(table):
    comparisons = []
    for same in [pair for pair in table if pair[0] == pair[1]]:
        for cross in [pair for pair in table if pair[1] == same[1] and pair[0] != pair[1]]:
            comparisons.append(difference(overall(table, same), overall(table, cross),
                                          f"{pair_name(same)} - {pair_name(cross)} (same test set)"))
    return comparisons


CLAIMS = {
    "a": ("finetune accuracy rises with s", claim_a),
    "b": ("augmentation helps most for small s and the benefit fades by s≈32", claim_b),
    "c": ("collage beats mixup for s in 1-16, mixup beats collage for s in 32-64", claim_c),
    "d": ("pretraining and finetuning on the same dataset beats a cross-dataset pair", claim_d),
}


def combine(verdicts):
    """A claim's verdict from its comparisons' verdicts."""
    if not verdicts:
        return "inconclusive"
    if "does not hold" in verdicts:
        return "does not hold"
    return "holds" if all(verdict == "holds" for verdict in verdicts) else "inconclusive"


def check_claims(records):
    """Every claim's verdict and comparisons.

    Returns:
        dict ``{letter: (claim text, verdict, [Comparison])}``.
    """
    table = accuracy_table(records)
    results = {}
    for letter, (text, compare) in CLAIMS.items():
        comparisons = compare(table)
        results[letter] = (text, combine([c.verdict() for c in comparisons]), comparisons)
    return results


def report(records):
    """The findings as plain text, one claim per paragraph."""
    lines = []
    for letter, (text, verdict, comparisons) in check_claims(records).items():
        lines.append(f"({letter}) {text}: {verdict.upper()}")
        lines += [f"    {comparison.text()}" for comparison in comparisons] or ["    no data for this claim"]
    return "\n".join(lines)


def markdown_table(records):
    """The findings as a markdown table: claim, verdict, and every comparison's numbers."""
    rows = ["| claim | verdict | evidence (mean difference ± 95% CI half-width over seeds) |", "| --- | --- | --- |"]
    for letter, (text, verdict, comparisons) in check_claims(records).items():
        evidence = "<br>".join(c.text() for c in comparisons) or "no data"
        rows.append(f"| ({letter}) {text} | **{verdict}** | {evidence} |")
    return "\n".join(rows)


def accuracy_markdown(records):
    """Mean finetune accuracy ± 95% CI per pair, augmentation and s, as a markdown table."""
    table = accuracy_table(records)
    samples = sorted({s for by_aug in table.values() for by_s in by_aug.values() for s in by_s})
    rows = ["| pair | augmentation | " + " | ".join(f"s={s}" for s in samples) + " |",
            "| --- | --- |" + " --- |" * len(samples)]
    for pair, by_augmentation in table.items():
        for augmentation, by_s in by_augmentation.items():
            cells = []
            for s in samples:
                values = list(by_s.get(s, {}).values())
                mean, half_width = mean_and_interval(values) if values else (float("nan"), 0.0)
                cells.append(f"{mean:.3f} ± {half_width:.3f}")
            rows.append(f"| {pair_name(pair)} | {augmentation} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m handin.findings", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="results files written by python -m handin.engine")
    parser.add_argument("--markdown", action="store_true", help="print markdown tables instead of text")
    options = parser.parse_args(argv)
    records = []
    for path in options.results:
        try:
            records += load_results(path)
        except ValueError as error:
            print(error, file=sys.stderr)
            return 2
    if not records:
        print(f"no runs in {', '.join(options.results)}: run python -m handin.engine first", file=sys.stderr)
        return 2
    print(markdown_table(records) + "\n\n" + accuracy_markdown(records) if options.markdown else report(records))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
