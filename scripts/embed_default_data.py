"""Write the data a wheel embeds: the default sweep's datasets, decoded from data/ at the resolutions it runs at.

    python scripts/embed_default_data.py [--out build/embedded]

Why: a wheel cannot carry data/ (74 MB of image files), yet `bench run` with no arguments must train the
default sweep from a wheel to a clone's numbers. The wheel build (hatch_build.py) runs this script and packs
``--out`` as ``bench/_registry/embedded/``; the folder is generated and git-ignored (build/), never committed:
27 MB of binary that a data or decoder change would rewrite whole.

Which datasets at which resolutions is read from the shipped sweeps/default.toml, expanded to runs as
``bench run`` does (the resolution a backbone's minimum input size makes effective, not just the one asked);
each file is :func:`bench.data.embed.embed_dataset`. A file still holding the same load is kept, and a file
the sweep no longer needs is removed. Exit status 3 means this Python cannot import the project's
dependencies (an isolated build environment), so the caller can say how to build instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MISSING_DEPENDENCIES = 3


def default_sweep_data() -> list[tuple[str, int]]:
    """(dataset, effective resolution) of every run of the shipped default sweep, sorted."""
    from bench.models.registry import get_backbone, resolve_resolution
    from bench.paths import registry_folders
    from bench.runs.sweep import load_sweep

    sweep = load_sweep(registry_folders("sweeps")[0] / "default.toml")
    return sorted(
        {
            (spec.dataset, resolve_resolution(get_backbone(spec.backbone), spec.resolution, spec.resolution_policy))
            for spec in sweep.expand()
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "embedded", help="folder of the files")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))  # this checkout's bench, whatever else is installed
    try:
        import bench.models.registry  # noqa: F401 -- timm and torch: everything the loads below need
        import bench.runs.sweep  # noqa: F401
        from bench.data.embed import embed_dataset
    except ImportError as err:
        print(f"embed_default_data: cannot import the project ({err})", file=sys.stderr)
        return MISSING_DEPENDENCIES
    start = time.perf_counter()
    kept = []
    for dataset, resolution in default_sweep_data():
        path, written = embed_dataset(dataset, resolution, args.out)
        kept.append(path)
        print(f"{path}: {'written' if written else 'up to date'} ({path.stat().st_size / 1e6:.1f} MB)")
    for stale in sorted(set(args.out.glob("*.npz")) - set(kept)):
        stale.unlink()
        print(f"{stale}: removed (not in the default sweep)")
    print(f"{len(kept)} file(s) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
