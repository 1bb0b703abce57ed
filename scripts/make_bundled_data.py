"""Regenerate the embedded ``data/`` folder from a full copy of the staged datasets.

    python scripts/make_bundled_data.py SOURCE [--out data]

SOURCE is a folder holding ``pneumoniamnist/``, ``chest_xray_pneumonia/``,
``isic_malignant_vs_benign_subset/`` and ``ham10000/`` in the layouts described in ``data/README.md``
(each with its ``manifest.csv``). Why a script: the bundled copies are downscaled, so anyone must be
able to re-derive them byte for byte from the public sources and check that nothing else changed.

Every source file is checked against its manifest, and each manifest against the sha256 recorded
below, before anything is written. Output is built next to ``--out`` and swapped in at the end, so a
failed run leaves the previous ``data/`` untouched. Re-encoding is deterministic for a given Pillow /
libjpeg build; the per-file sha256 of the result is in each bundled ``manifest.csv``.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image

# sha256 of the source files this script trusts (published in the staged data's README).
SOURCE_SHA256 = {
    "pneumoniamnist/pneumoniamnist.npz": "e1792d3f03751cb101e99f19a63b3c1941436c988665f47853417b05be250cd8",
    "chest_xray_pneumonia/manifest.csv": "28f9540db36421be1c8cd2192e44094d1bd01b6349544651c2eef4072d1e698c",
    "isic_malignant_vs_benign_subset/manifest.csv": "9086e77ca7943e7a0844868ea1d749c5e91bc300b8b90a889999a64d09db071e",  # noqa: E501
    "ham10000/manifest.csv": "4d52a268e8f4641f4d2ce9c79c63581f40bc033bc54c07a571d9e44110bd6d56",
    "ham10000/HAM10000_metadata.csv": "06aee5e603d313ba69de38263053c792a1dff030eb9c44a96ceb477ceefb99a5",
    "ham10000/dermamnist_split.csv": "0c9b1719bf04fa9ad3cdee2a852067a8b848795624e88ea794df40fd13c099f0",
}
# (width, height, PIL mode) of each bundled image set; HAM10000 keeps its 4:3 aspect ratio.
HAM_SIZE = (96, 72, "RGB")
CHEST_SIZE = (96, 96, "L")
ISIC_SIZE = (96, 96, "RGB")
JPEG_QUALITY = 90
WORKERS = 2

MIT_NOTICE = """\
The file dermamnist_split.csv is copied unchanged from
https://github.com/kakumarabhishek/Corrected-Skin-Image-Datasets
(DermaMNIST/DermaMNIST_Analysis/dermamnist_split_info.csv, commit d15d70dc445c7f5960d8376f89512ea9079c4222)
under the following licence. The images it refers to remain CC BY-NC 4.0 (HAM10000).

MIT License

Copyright (c) 2024 Kumar Abhishek

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify_source(source: Path) -> None:
    """Refuse to build from anything but the published bytes: manifests first, then every listed file."""
    for rel, expected in SOURCE_SHA256.items():
        if not (source / rel).is_file():
            sys.exit(f"error: {source / rel} does not exist (is SOURCE the staged data folder?)")
        if sha256(source / rel) != expected:
            sys.exit(f"error: {source / rel} has sha256 {sha256(source / rel)}, expected {expected}")
    for folder in ("chest_xray_pneumonia", "isic_malignant_vs_benign_subset", "ham10000"):
        manifest = pd.read_csv(source / folder / "manifest.csv")
        with ThreadPoolExecutor(WORKERS) as pool:
            digests = list(pool.map(lambda p, f=folder: sha256(source / f / p), manifest["path"]))
        bad = manifest.loc[[d != e for d, e in zip(digests, manifest["sha256"], strict=True)], "path"]
        if not bad.empty:
            sys.exit(
                f"error: {source / folder / bad.iloc[0]} does not match its manifest "
                f"({len(bad)} files differ)"
            )
    print(f"verified {source}: manifests and every listed file match")


def downscale(src: Path, dst: Path, size: tuple[int, int, str]) -> None:
    """Lanczos downscale (antialiased) to a baseline JPEG without metadata, deterministic per libjpeg."""
    width, height, mode = size
    with Image.open(src) as img:
        small = img.convert(mode).resize((width, height), Image.Resampling.LANCZOS)
    dst.parent.mkdir(parents=True, exist_ok=True)
    small.save(dst, "JPEG", quality=JPEG_QUALITY, optimize=True)


def downscale_all(pairs: list[tuple[Path, Path]], size: tuple[int, int, str]) -> None:
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda pair: downscale(pair[0], pair[1], size), pairs))


def write_manifest(folder: Path, rows: pd.DataFrame) -> str:
    """Add bytes and sha256 of each bundled file to ``rows`` (which has ``path``) and save it."""
    rows = rows.copy()
    rows["bytes"] = [(folder / p).stat().st_size for p in rows["path"]]
    rows["sha256"] = [sha256(folder / p) for p in rows["path"]]
    rows.to_csv(folder / "manifest.csv", index=False, lineterminator="\n")
    return sha256(folder / "manifest.csv")


def build_class_folders(src: Path, dst: Path, size: tuple[int, int, str]) -> dict:
    manifest = pd.read_csv(src / "manifest.csv")
    downscale_all([(src / p, dst / p) for p in manifest["path"]], size)
    digest = write_manifest(dst, manifest[["path", "split", "label_name", "label"]])
    counts = manifest.groupby(["split", "label_name"]).size().unstack(fill_value=0).reindex(["train", "test"])
    return {"manifest_sha256": digest, "counts": counts, **folder_size(dst)}


def build_ham10000(src: Path, dst: Path) -> dict:
    manifest = pd.read_csv(src / "manifest.csv")
    downscale_all([(src / p, dst / p) for p in manifest["path"]], HAM_SIZE)
    for name in ("HAM10000_metadata.csv", "dermamnist_split.csv"):
        shutil.copyfile(src / name, dst / name)  # byte for byte (the split file keeps its CRLF endings)
    (dst / "dermamnist_split.LICENSE").write_text(MIT_NOTICE, encoding="utf-8")
    digest = write_manifest(dst, manifest[["path", "image_id", "lesion_id", "dx", "label"]])
    return {"manifest_sha256": digest, **folder_size(dst)}


def folder_size(folder: Path) -> dict:
    files = [p for p in folder.rglob("*") if p.is_file()]
    images = [p for p in files if p.suffix.lower() in {".jpg", ".jpeg"}]
    return {
        "total_bytes": sum(p.stat().st_size for p in files),
        "image_bytes": sum(p.stat().st_size for p in images),
        "images": len(images),
    }


def counts_table(counts: pd.DataFrame) -> str:
    header = "| split | " + " | ".join(counts.columns) + " |"
    rule = "| --- |" + " --- |" * len(counts.columns)
    body = [f"| {split} | " + " | ".join(f"{n:,}" for n in row) + " |" for split, row in counts.iterrows()]
    return "\n".join([header, rule, *body])


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


README = """\
# Embedded data

Small real copies of four public medical-imaging datasets, in the **same layouts as the published
downloads**, so `bench` works right after a clone and the same loaders read a full-size download
(`--data-root`). Generated by `python scripts/make_bundled_data.py SOURCE` from the staged copies
(every source file is checked against its published sha256 first); do not edit by hand.

| folder | entries (`datasets/`) | images | stored as | size |
| --- | --- | --- | --- | --- |
| `pneumoniamnist/` | `pneumoniamnist` | 5,856 | official npz, unchanged (28x28 gray) | {pn_size} |
| `ham10000/` | `ham10000`, `dermamnist` | {ham_images:,} | {ham_w}x{ham_h} RGB JPEG q{q}, all | {ham_size} |
| `chest_xray/` | `chest_xray` | {cx_images:,} | {cx_w}x{cx_h} gray JPEG q{q}, all | {cx_size} |
| `isic/` | `isic` | {isic_images:,} | {isic_w}x{isic_h} RGB JPEG q{q}, 34 % subset | {isic_size} |
| **total** | | | | **{total_size}** |

Downscaling: Pillow `resize` with Lanczos (antialiased), then JPEG quality {q} with optimised Huffman
tables and no metadata. Aspect ratios are those of the sources (HAM10000 4:3, the others already
square). Each image folder has a `manifest.csv` listing every file with its bytes and sha256; the
loaders read the images, the manifests are for checking. Because images are stored small, loading
at a resolution above the stored size upsamples: use `--data-root` with a full download for that.

---

## `pneumoniamnist/pneumoniamnist.npz`: official MedMNIST v2 PneumoniaMNIST (28x28)

- The unmodified official file: MD5 `28209eda62fecd6e6a2d98b1501bb15f` (as in `medmnist` 3.0.2
  `INFO`), sha256 `{pn_sha}`, {pn_bytes:,} bytes.
- Origin: GitHub `Longer430/medaudit-pneumoniamnist`, `data/raw/pneumoniamnist.npz` (commit
  `fcf64059e7d9f7b71f05858a0445784889f2c84c`); same bytes as the Zenodo release.
- Keys `train|val|test_images` / `_labels`: 4,708 / 524 / 624 images (normal 0, pneumonia 1).
- Licence: CC BY 4.0. Cite Yang J. et al., "MedMNIST v2 - A large-scale lightweight benchmark for
  2D and 3D biomedical image classification", *Scientific Data* 10, 41 (2023), and Kermany D. S. et
  al., *Cell* 172(5):1122-1131 (2018).
- Same cohort as `chest_xray/`: its test split is Kermany's test split.

## `ham10000/`: HAM10000, all 10,015 images, with the official DermaMNIST split

- `images/ISIC_xxxxxxx.jpg`: every HAM10000 image at {ham_w}x{ham_h} (downscaled from the 200x150
  copy in GitHub `mmalek06/bounding-box-detection-ham1000`, commit
  `a9466f77d3af8430af4515c2d94016873775cf31`, itself downscaled from the 600x450 originals).
- `HAM10000_metadata.csv`: the standard metadata (`lesion_id,image_id,dx,dx_type,age,sex,localization`),
  unchanged, sha256 `{meta_sha}`.
- `dermamnist_split.csv`: the official DermaMNIST (MedMNIST v2) train/val/test split as HAM10000 image
  ids (`split,index,image_id`, CRLF line endings), unchanged, sha256 `{split_sha}`. From Abhishek K.,
  Jain A., Hamarneh G., "Investigating the Quality of DermaMNIST and Fitzpatrick17k Dermatological
  Image Datasets", *Scientific Data* (2025), file `DermaMNIST/DermaMNIST_Analysis/dermamnist_split_info.csv`
  of GitHub `kakumarabhishek/Corrected-Skin-Image-Datasets` (commit
  `d15d70dc445c7f5960d8376f89512ea9079c4222`); MIT licence, notice in `dermamnist_split.LICENSE`.
- Because every image is here, DermaMNIST's exact train/val/test membership (7,007 / 1,003 / 2,005)
  is rebuilt at any resolution (entry `dermamnist`); pixel values differ from the official npz, which
  was resized from the 600x450 originals.
- The DermaMNIST split is image-level: 1,006 of the 7,470 lesions are in more than one split (601
  train+test, 292 train+val, 73 val+test, 40 in all three). Entry `ham10000` splits by `lesion_id`
  instead.
- `manifest.csv` (`path,image_id,lesion_id,dx,label,bytes,sha256`, label in MedMNIST order akiec,
  bcc, bkl, df, mel, nv, vasc): sha256 `{ham_manifest}`.
- Class counts: akiec 327, bcc 514, bkl 1,099, df 115, mel 1,113, nv 6,705, vasc 142.
- Licence: CC BY-NC 4.0 (Harvard Dataverse doi:10.7910/DVN/DBW86T): non-commercial research only.
  Cite Tschandl P., Rosendahl C., Kittler H., "The HAM10000 dataset, a large collection of
  multi-source dermatoscopic images of common pigmented skin lesions", *Scientific Data* 5, 180161
  (2018); for the DermaMNIST split also MedMNIST v2 and Abhishek et al. (2025).

## `chest_xray/`: Kermany pediatric chest X-ray (Kaggle "chest-xray-pneumonia" layout)

- `{{train,test}}/{{NORMAL,PNEUMONIA}}/*.jpeg`: every train and test image of Kaggle
  `paultimothymooney/chest-xray-pneumonia` (the 16-image Kaggle `val` folder is not included), with
  the original file names, as {cx_w}x{cx_h} single-channel JPEG. Downscaled from the 224x224 copy in
  GitHub `waliatushar/ai-pneumonia-detection` (commit `0b0320d6dcc317a8c9d18d26c5887e1854afde98`),
  whose owner had squashed the originals to 224x224 (aspect ratio not kept).
- Counts:

{cx_counts}

- Source quirk kept: 30 byte-identical duplicate pairs, each within one split and class.
- `manifest.csv` (`path,split,label_name,label,bytes,sha256`): sha256 `{cx_manifest}`.
- Licence: CC BY 4.0. Cite Kermany D., Zhang K., Goldbaum M., "Labeled Optical Coherence Tomography
  (OCT) and Chest X-Ray Images for Classification", Mendeley Data v2 (2018), doi:10.17632/rscbjbr9sj.2,
  and Kermany D. S. et al., *Cell* 172(5):1122-1131 (2018).
- Same cohort as PneumoniaMNIST: do not treat the two as independent datasets.

## `isic/`: ISIC "Skin Cancer: Malignant vs. Benign" (Kaggle, fanconic), 34 % subset

- `{{train,test}}/{{benign,malignant}}/<n>.jpg` at {isic_w}x{isic_h}, original file names. A stratified
  random subset (round(0.34 n) of every split x class folder, Python `random.Random(12345)`) of the
  3,297-image Kaggle dataset `fanconic/skin-cancer-malignant-vs-benign`, taken from GitHub
  `Mike-26-machine/Skin-Cancer-vs-Benign-Tumour` (commit `48dd20ba2edc9aaf976b637ed33705f1f2f5d02d`).
  The full set has train 1,440 benign / 1,197 malignant and test 360 / 300.
- Counts in this subset:

{isic_counts}

- `manifest.csv` (`path,split,label_name,label,bytes,sha256`): sha256 `{isic_manifest}`.
- Licence: each image keeps its ISIC Archive licence (CC-0, CC-BY or CC-BY-NC) and the Kaggle
  packaging carries no per-image attribution: research / non-commercial use only. Cite the ISIC
  Archive (https://www.isic-archive.com) and the Kaggle dataset (Claudio Fanconi).
- Also from the ISIC Archive, like HAM10000: lesions may overlap with `ham10000/`.
"""


def build(source: Path, out: Path) -> None:
    verify_source(source)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    (partial / "pneumoniamnist").mkdir(parents=True)
    shutil.copyfile(
        source / "pneumoniamnist/pneumoniamnist.npz", partial / "pneumoniamnist/pneumoniamnist.npz"
    )
    print("building ham10000 ...")
    ham = build_ham10000(source / "ham10000", partial / "ham10000")
    print("building chest_xray ...")
    cx = build_class_folders(source / "chest_xray_pneumonia", partial / "chest_xray", CHEST_SIZE)
    print("building isic ...")
    isic = build_class_folders(source / "isic_malignant_vs_benign_subset", partial / "isic", ISIC_SIZE)
    pn_bytes = (partial / "pneumoniamnist/pneumoniamnist.npz").stat().st_size
    readme = README.format(
        q=JPEG_QUALITY,
        pn_size=mb(pn_bytes),
        pn_bytes=pn_bytes,
        pn_sha=SOURCE_SHA256["pneumoniamnist/pneumoniamnist.npz"],
        ham_images=ham["images"],
        ham_w=HAM_SIZE[0],
        ham_h=HAM_SIZE[1],
        ham_size=mb(ham["total_bytes"]),
        ham_manifest=ham["manifest_sha256"],
        meta_sha=SOURCE_SHA256["ham10000/HAM10000_metadata.csv"],
        split_sha=SOURCE_SHA256["ham10000/dermamnist_split.csv"],
        cx_images=cx["images"],
        cx_w=CHEST_SIZE[0],
        cx_h=CHEST_SIZE[1],
        cx_size=mb(cx["total_bytes"]),
        cx_manifest=cx["manifest_sha256"],
        cx_counts=counts_table(cx["counts"]),
        isic_images=isic["images"],
        isic_w=ISIC_SIZE[0],
        isic_h=ISIC_SIZE[1],
        isic_size=mb(isic["total_bytes"]),
        isic_manifest=isic["manifest_sha256"],
        isic_counts=counts_table(isic["counts"]),
        total_size=mb(pn_bytes + ham["total_bytes"] + cx["total_bytes"] + isic["total_bytes"]),
    )
    (partial / "README.md").write_text(readme, encoding="utf-8")
    swap_in(partial, out)
    print(f"wrote {out} ({mb(folder_size(out)['total_bytes'])})")


def swap_in(partial: Path, out: Path) -> None:
    """Replace ``out`` by ``partial`` with two renames, so ``out`` is never half-written."""
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    partial.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="folder with the staged full-size datasets")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "data")
    args = parser.parse_args()
    build(args.source.resolve(), args.out.resolve())


if __name__ == "__main__":
    main()
