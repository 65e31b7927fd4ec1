#!/usr/bin/env python3
"""Pick a few coverage-diverse corpus inputs to commit as seeds.

Measures the full coverage (edges and libFuzzer features) of every committed seed and
every corpus input, one input at a time (a `-merge=1` run per file with a control file;
one merge over a whole directory would not do: it only records what each input adds to
the inputs before it). Then greedily adds the corpus input that covers the most edges
the seeds and earlier picks do not (then the most new features, then the smallest)
until nothing new is covered or `--max` inputs are chosen. Prints the choice; with
`--copy` writes each chosen input into the seed directory as `cov-<name>`.

    cd fuzz
    cargo +nightly fuzz build session
    cargo +nightly fuzz cmin session corpus/session
    python3 select_seeds.py session --copy

Needs only the fuzz binary that `cargo fuzz build` made; about 0.1 s per input.
"""

import argparse
import os
import shutil
import subprocess
import tempfile


def coverage(binary, path, scratch):
    """The (edges, features) that running `path` alone covers."""
    inp, out, ctl = (os.path.join(scratch, n) for n in ("in", "out", "ctl"))
    for d in (inp, out):
        shutil.rmtree(d, ignore_errors=True)
        os.mkdir(d)
    if os.path.exists(ctl):
        os.remove(ctl)  # an existing control file would resume the old merge
    shutil.copyfile(path, os.path.join(inp, "input"))
    subprocess.run([binary, "-merge=1", f"-merge_control_file={ctl}", out, inp],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    edges, features = set(), set()
    if not os.path.exists(ctl):  # libFuzzer merges nothing for an empty input
        return edges, features
    with open(ctl) as f:
        for line in f:
            kind, *values = line.split()
            if kind == "FT":
                features = set(map(int, values[1:]))
            elif kind == "COV":
                edges = set(map(int, values[1:]))
    return edges, features


def files(directory):
    return sorted(os.path.join(directory, n) for n in os.listdir(directory)
                  if not n.startswith(".") and os.path.isfile(os.path.join(directory, n)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target")
    parser.add_argument("--max", type=int, default=30)
    parser.add_argument("--max-size", type=int, default=4095)
    parser.add_argument("--copy", action="store_true")
    args = parser.parse_args()

    here = os.path.dirname(os.path.abspath(__file__))
    binary = os.path.join(here, "target/x86_64-unknown-linux-gnu/release", args.target)
    seeds = os.path.join(here, "seeds", args.target)
    corpus = os.path.join(here, "corpus", args.target)

    with tempfile.TemporaryDirectory() as scratch:
        covered_edges, covered_features = set(), set()
        for path in files(seeds):
            edges, features = coverage(binary, path, scratch)
            covered_edges |= edges
            covered_features |= features
        seed_contents = {open(p, "rb").read() for p in files(seeds)}
        candidates = {}
        for path in files(corpus):
            if os.path.getsize(path) > args.max_size:
                continue
            if open(path, "rb").read() in seed_contents:
                continue
            candidates[path] = coverage(binary, path, scratch)

    all_edges = covered_edges.union(*(e for e, _ in candidates.values()))
    all_features = covered_features.union(*(f for _, f in candidates.values()))
    print(f"seeds cover {len(covered_edges)}/{len(all_edges)} edges, "
          f"{len(covered_features)}/{len(all_features)} features")

    def gain(path):
        edges, features = candidates[path]
        return (len(edges - covered_edges), len(features - covered_features),
                -os.path.getsize(path))

    chosen = []
    while len(chosen) < args.max and candidates:
        best = max(candidates, key=gain)
        new_edges, new_features, size = gain(best)
        if (new_edges, new_features) == (0, 0):
            break
        print(f"  {os.path.relpath(best, here)}: {-size} bytes, "
              f"+{new_edges} edges, +{new_features} features")
        edges, features = candidates.pop(best)
        covered_edges |= edges
        covered_features |= features
        chosen.append(best)

    print(f"with {len(chosen)} chosen: {len(covered_edges)}/{len(all_edges)} edges, "
          f"{len(covered_features)}/{len(all_features)} features")
    if args.copy:
        for path in chosen:
            shutil.copyfile(path, os.path.join(seeds, "cov-" + os.path.basename(path)[:16]))


if __name__ == "__main__":
    main()
