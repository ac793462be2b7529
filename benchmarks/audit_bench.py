"""`clipcls audit` measured (issue 21): label errors found, duplicates found, time and memory.

    python benchmarks/audit_bench.py labels [--data neu|demo] [--model mini] [--seeds 0 1 2]
    python benchmarks/audit_bench.py duplicates [--data neu|demo] [--model mini]
    python benchmarks/audit_bench.py scale [--images 10000] [--model mini]

labels: 5% of the training images are moved (symlinked) into another class folder, chosen and
sent at random (seeded); the audit runs on the result; precision and recall of the flipped images
among the top k by cleanlab's label-quality score (k = the number flipped), and of the set that
cleanlab's `find_label_issues` flags.

duplicates: a seeded 80/20 train/val split of the images (symlinks); first the untouched split is
audited (every reported pair is a false duplicate unless the data set holds real copies, which are
listed for inspection), then 20 training images are put into val (7 byte copies, 7 re-encoded at
JPEG quality 50, 6 resized to 3/4 size), and the audit must report each with its source. Also prints
the perceptual-hash distance and embedding cosine of the injected pairs, and of every image's
nearest distinct neighbour in the untouched set: what the thresholds were chosen on.

scale: N images made from the data set by flips and rotations (re-encoded, so none is a byte
copy), audited in a child process; wall time and the child's peak resident memory.

NEU is read from ../shared/data (never copied into the project); every derived folder lives in a
temporary directory. All runs use one compute thread.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
DATA = {
    "neu": (SHARED / "neu-surface-defects", SHARED / "neu-surface-defects.yaml"),
    "demo": (Path("/tmp/audit21/demo_data/train"), ROOT / "info" / "demo_class_descriptions.yaml"),
}


def files_of(data: Path) -> dict[str, list[Path]]:
    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    return {c: sorted(p for p in (data / c).iterdir() if p.is_file()) for c in classes}


def link(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.symlink_to(src.resolve())


def audit(data: Path, out: Path, model: str, val: Path | None = None, descriptions: Path | None = None):
    from clipcls.audit.run import AuditInputs, run_audit

    inputs = AuditInputs(
        data=str(data),
        out=out,
        val=str(val) if val else None,
        descriptions=str(descriptions) if descriptions else None,
        model=model,
        workers=0,
        progress=False,
    )
    return run_audit(inputs)


def labels_bench(args: argparse.Namespace) -> dict:
    src, _ = DATA[args.data]
    files = files_of(src)
    classes = list(files)
    results = []
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        everything = [(c, f) for c in classes for f in files[c]]
        flipped = set(rng.choice(len(everything), size=round(0.05 * len(everything)), replace=False).tolist())
        with tempfile.TemporaryDirectory(prefix="audit_labels_") as tmp:
            root, truth = Path(tmp) / "train", set()
            for k, (c, f) in enumerate(everything):
                label = c
                if k in flipped:
                    label = classes[(classes.index(c) + 1 + rng.integers(len(classes) - 1)) % len(classes)]
                dest = root / label / f"{c}__{f.name}"  # keep the true class in the name for scoring
                link(f, dest)
                if k in flipped:
                    truth.add(str(dest))
            started = time.perf_counter()
            result = audit(root, Path(tmp) / "out", args.model)
            elapsed = time.perf_counter() - started
            from clipcls.data.index import index_folder

            index = index_folder(root)
            paths = [index.paths[i] for i in range(len(index.paths))]
            quality = np.nan_to_num(result.label_quality, nan=np.inf)
            k = len(truth)
            top = {paths[i] for i in np.argsort(quality, kind="stable")[:k]}
            flagged = {r["path"] for r in result.tables["label_issues"]}
            hits_top, hits_flag = len(top & truth), len(flagged & truth)
            row = {
                "seed": seed,
                "images": len(paths),
                "flipped": k,
                "top_k_precision": hits_top / k,
                "top_k_recall": hits_top / k,
                "flagged": len(flagged),
                "flagged_precision": hits_flag / max(1, len(flagged)),
                "flagged_recall": hits_flag / k,
                "probe": result.facts.get("label probe", ""),
                "seconds": round(elapsed, 1),
            }
            print(json.dumps(row), flush=True)
            results.append(row)
    return {"data": args.data, "model": args.model, "runs": results}


def _split(files: dict[str, list[Path]], dest: Path, seed: int) -> list[tuple[Path, Path]]:
    """Seeded 80/20 split as symlinks; returns the (source file, train link) list."""
    rng = np.random.default_rng(seed)
    train = []
    for c, items in files.items():
        order = rng.permutation(len(items))
        n_val = max(1, len(items) // 5)
        for rank, i in enumerate(order):
            split = "val" if rank < n_val else "train"
            link(items[i], dest / split / c / items[i].name)
            if split == "train":
                train.append((items[i], dest / split / c / items[i].name))
    return train


def _inject(train: list[tuple[Path, Path]], val: Path, seed: int) -> list[tuple[str, str, str]]:
    """20 training images into val: 7 byte copies, 7 re-encoded (JPEG q50), 6 resized (3/4)."""
    from PIL import Image

    rng = np.random.default_rng(seed + 1)
    picked = rng.choice(len(train), size=20, replace=False)
    made = []
    for n, k in enumerate(picked):
        source, train_link = train[k]
        cls = train_link.parent.name
        dest = val / cls / f"copy{n}_{source.stem}.jpg"
        if n < 7:
            dest.write_bytes(source.read_bytes())
            how = "byte copy"
        else:
            with Image.open(source) as im:
                im = im.convert("RGB")
                if n >= 14:
                    im = im.resize((im.width * 3 // 4, im.height * 3 // 4), Image.LANCZOS)
                im.save(dest, quality=50 if n < 14 else 90)
            how = "re-encoded q50" if n < 14 else "resized 3/4"
        made.append((str(train_link), str(dest), how))
    return made


def _nearest_stats(out: Path, paths: list[str]) -> dict:
    """For every image of an audit, its nearest distinct neighbour: min phash bits, max cosine."""
    from clipcls.audit.files import scan_files

    table = scan_files(paths)
    meta = json.loads((out / "embeddings.json").read_text())
    emb, row_of = np.load(out / "embeddings.npy"), np.asarray(meta["row_of"])
    ok = np.flatnonzero(table.readable & (row_of >= 0))
    same = (table.sha256[ok][:, None, :] == table.sha256[ok][None, :, :]).all(axis=2)
    bits = np.bitwise_count(table.phash[ok][:, None] ^ table.phash[ok][None, :]).astype(np.int64)
    cos = emb[row_of[ok]] @ emb[row_of[ok]].T
    bits[same], cos[same] = 99, -1.0  # byte copies (and the image itself) are not "distinct"
    min_bits, max_cos = bits.min(axis=1), cos.max(axis=1)
    both = np.array([(bits[i] <= 10)[cos[i] >= 0.9].any() for i in range(len(ok))])
    pct = lambda v, qs: {f"p{q}": float(np.percentile(v, q)) for q in qs}  # noqa: E731
    return {
        "nearest_phash_bits": {"min": int(min_bits.min()), **pct(min_bits, (1, 5, 50))},
        "nearest_cosine": {"max": float(max_cos.max()), **pct(max_cos, (50, 95, 99))},
        "images_with_a_neighbour_within_10_bits_and_cos_0.9": int(both.sum()),
        "pairs_by_bits_and_cosine": {
            f"bits<={b},cos>={c}": int((np.triu((bits <= b) & (cos >= c), 1)).sum())
            for b in (4, 6, 8, 10, 12)
            for c in (0.9, 0.95, 0.98)
        },
    }


def duplicates_bench(args: argparse.Namespace) -> dict:
    src, _ = DATA[args.data]
    files = files_of(src)
    with tempfile.TemporaryDirectory(prefix="audit_dups_") as tmp:
        root = Path(tmp)
        train = _split(files, root, seed=0)
        clean = audit(root / "train", root / "out_clean", args.model, val=root / "val")
        untouched = clean.tables["duplicates"]
        from clipcls.audit.run import index_images

        images = index_images(str(root / "train"), str(root / "val"), clean)
        paths = [images.paths[i] for i in range(len(images.paths))]
        stats = _nearest_stats(root / "out_clean", paths)
        made = _inject(train, root / "val", seed=0)
        dirty = audit(root / "train", root / "out_dirty", args.model, val=root / "val")
        pairs = {(r["path_a"], r["path_b"]): r for r in dirty.tables["duplicates"]}
        found = []
        for a, b, how in made:
            row = pairs.get((a, b)) or pairs.get((b, a))
            found.append({"train": a, "val": b, "how": how, "found": row is not None, "row": row})
        dirty_images = index_images(str(root / "train"), str(root / "val"), dirty)
        dirty_paths = [dirty_images.paths[i] for i in range(len(dirty_images.paths))]
        injected_stats = _injected_stats(made, root / "out_dirty", dirty_paths)
        blank = {r["path"] for r in clean.tables["files"] if r["problem"] == "nearly constant"}
    result = {
        "data": args.data,
        "model": args.model,
        "untouched_pairs": len(untouched),
        "untouched_pairs_by_where": _count_where(untouched),
        "untouched_pairs_between_blank_images": sum(r["path_a"] in blank and r["path_b"] in blank for r in untouched),
        "untouched_rows": untouched,
        "injected": len(made),
        "injected_found": sum(f["found"] for f in found),
        "not_found": [f for f in found if not f["found"]],
        "found_rows": [f["row"] for f in found if f["found"]],
        "injected_phash_and_cosine": injected_stats,
        "untouched_nearest": stats,
        "after_injection_pairs": len(dirty.tables["duplicates"]),
    }
    print(json.dumps(result, indent=1, default=str), flush=True)
    return result


def _injected_stats(made, out: Path, paths: list[str]) -> list[dict]:
    """Perceptual-hash distance and embedding cosine of every injected pair, found or not."""
    from clipcls.audit.files import inspect_file

    meta = json.loads((out / "embeddings.json").read_text())
    emb, row_of = np.load(out / "embeddings.npy"), np.asarray(meta["row_of"])
    where = {p: i for i, p in enumerate(paths)}
    rows = []
    for a, b, how in made:
        fa, fb = inspect_file(a), inspect_file(b)
        ra, rb = row_of[where[a]], row_of[where[b]]
        cosine = float(emb[ra] @ emb[rb]) if ra >= 0 and rb >= 0 else None
        rows.append({"how": how, "phash_bits": int(bin(fa["phash"] ^ fb["phash"]).count("1")), "cosine": cosine})
    return rows


def _count_where(rows) -> dict:
    out: dict[str, int] = {}
    for r in rows:
        key = f"{r['where']} {r['kind']}"
        out[key] = out.get(key, 0) + 1
    return out


def scale_bench(args: argparse.Namespace) -> dict:
    """Make N distinct images (flips/rotations of the data set, re-encoded) and audit them in a
    child process: wall time and peak RSS."""
    from PIL import Image

    src, _ = DATA[args.data]
    files = files_of(src)
    ops = [None, Image.FLIP_LEFT_RIGHT, Image.FLIP_TOP_BOTTOM, Image.ROTATE_90, Image.ROTATE_180, Image.ROTATE_270]
    with tempfile.TemporaryDirectory(prefix="audit_scale_") as tmp:
        root, made = Path(tmp) / "train", 0
        started = time.perf_counter()
        for op in ops:
            for c, items in files.items():
                for f in items:
                    if made >= args.images:
                        break
                    dest = root / c / f"{op}_{f.name}"
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    if op is None:
                        dest.symlink_to(f.resolve())
                    else:
                        with Image.open(f) as im:
                            im.transpose(op).save(dest, quality=90)
                    made += 1
        print(f"made {made} images in {time.perf_counter() - started:.0f} s", flush=True)
        cmd = [sys.executable, "-m", "clipcls", "audit", str(root), "--out", str(Path(tmp) / "out")]
        cmd += ["--model", args.model, "--workers", "0", "--descriptions", str(DATA[args.data][1])]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        started = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        again = subprocess.run(cmd, env=env, capture_output=True, text=True)  # embeddings from the cache
        rerun = time.perf_counter() - started
        both = resource.getrusage(resource.RUSAGE_CHILDREN)
        rerun_cpu = both.ru_utime + both.ru_stime - usage.ru_utime - usage.ru_stime
    result = {
        "images": made,
        "model": args.model,
        "exit": proc.returncode,
        "wall_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_mib": round(peak),
        "rerun_with_cached_embeddings_s": round(rerun, 1),
        "rerun_cpu_s": round(rerun_cpu, 1),
        "rerun_exit": again.returncode,
        "stdout": proc.stdout.strip()[-300:],
        "stderr_tail": proc.stderr.strip()[-600:],
    }
    print(json.dumps(result, indent=1), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("labels", "duplicates", "scale"))
    parser.add_argument("--data", choices=tuple(DATA), default="neu")
    parser.add_argument("--model", default="mini")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--json", help="also write the result here")
    parser.add_argument("--cosine-min", type=float, help="near-duplicate cosine (default: the audit's)")
    parser.add_argument("--phash-bits", type=int, help="near-duplicate hash distance (default: the audit's)")
    args = parser.parse_args()
    from clipcls.audit import duplicates

    if args.cosine_min is not None:  # near_pairs reads its defaults at call time from these
        duplicates.COSINE_MIN = args.cosine_min
    if args.phash_bits is not None:
        duplicates.PHASH_MAX_BITS = args.phash_bits
    import torch

    torch.set_num_threads(1)
    result = {"labels": labels_bench, "duplicates": duplicates_bench, "scale": scale_bench}[args.what](args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
