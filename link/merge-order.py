#!/usr/bin/env python3
"""Writes the symbol ordering file for LLD from callgrind profiles (see link/order.sh).

usage: merge-order.py PROFILES_DIR BINARY... > link/cloudlb.order

PROFILES_DIR has one directory per run (its name is the run's label) of callgrind output files.
Every function that ran is listed once, if one of the BINARIES defines it, grouped by the set of
runs it ran in: the functions every run needs first, then those of fewer runs, so that what only
one provider runs stays together (and away from the pages of a process that uses another).
"""
import collections
import os
import re
import subprocess
import sys

FN = re.compile(r"^c?fn=\(\d+\) (.*)$")


def text_symbols(binary):
    out = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
    return {p[2] for p in (l.split() for l in out.splitlines()) if len(p) == 3 and p[1] in "tTwW"}


def ran(directory):
    names = set()
    for f in os.listdir(directory):
        with open(os.path.join(directory, f), errors="replace") as lines:
            for line in lines:
                m = FN.match(line.rstrip("\n"))
                if m:
                    # callgrind marks recursion depth as 'N
                    names.add(re.sub(r"'\d+$", "", m.group(1)))
    return names


def main():
    profiles, binaries = sys.argv[1], sys.argv[2:]
    if not binaries:
        sys.exit(__doc__)
    symbols = {os.path.basename(b): text_symbols(b) for b in binaries}
    defined = set().union(*symbols.values())
    runs = collections.defaultdict(set)
    for label in sorted(os.listdir(profiles)):
        for name in ran(os.path.join(profiles, label)) & defined:
            runs[name].add(label)
    print("# The functions cloudlb runs, laid out first by LLD (build.rs); written by link/order.sh.")
    print("# Runs: " + ", ".join(sorted(os.listdir(profiles))) + f"; {len(runs)} functions.")
    # Each build names part of the functions alike (the benchmark's build enables other
    # features of some crates); the benchmark compares its binary with this line.
    present = ", ".join(f"{b} {len(s & runs.keys())}" for b, s in symbols.items())
    print(f"# In the binaries when written: {present}")
    for name in sorted(runs, key=lambda n: (-len(runs[n]), sorted(runs[n]), n)):
        print(name)


main()
