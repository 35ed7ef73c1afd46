"""``python -m autograder.sandbox``: print which sandbox limit holds on this machine, and by what."""

import sys

from .enforcement import enforcement


def main():
    report = enforcement()
    for name, entry in report.items():
        print(f"{name:>10}: {entry['mechanism'] or 'NOT ENFORCED: ' + entry['reason']}")
    return 0 if all(entry["mechanism"] for entry in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
