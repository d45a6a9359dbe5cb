#!/usr/bin/env python3
"""Writes tests/fixtures/images/jpeg_layouts/: small JPEGs in each layout the reduced-size decoder
(src/ingest/jpeg_reduced.rs) handles, made with Pillow (libjpeg-turbo) from astronaut.jpg.
Sizes are odd on purpose, so that MCUs overhang the picture on both sides.

    python3 scripts/make_jpeg_fixtures.py
"""
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "tests" / "fixtures" / "images"
OUT = IMAGES / "jpeg_layouts"


def main():
    OUT.mkdir(exist_ok=True)
    source = Image.open(IMAGES / "astronaut.jpg").convert("RGB").resize((203, 157), Image.BICUBIC)
    for name, subsampling in [("444", "4:4:4"), ("422", "4:2:2"), ("420", "4:2:0")]:
        source.save(OUT / f"ycbcr_{name}.jpg", quality=92, subsampling=subsampling)
    # Restart markers every 5 MCUs: intervals end mid-row, and RST numbers wrap past 7.
    source.save(OUT / "ycbcr_420_restarts.jpg", quality=92, subsampling="4:2:0", restart_marker_blocks=5)
    source.convert("L").save(OUT / "grey.jpg", quality=92)
    source.convert("L").save(OUT / "grey_restarts.jpg", quality=92, restart_marker_rows=1)
    # Progressive: only 1/8 is read here (DC scans, first pass and refinement; AC scans skipped).
    source.save(OUT / "progressive_420.jpg", quality=92, subsampling="4:2:0", progressive=True)
    source.save(OUT / "progressive_444_restarts.jpg", quality=92, subsampling="4:4:4", progressive=True,
                restart_marker_blocks=7)
    source.convert("L").save(OUT / "progressive_grey.jpg", quality=92, progressive=True)
    # Optimised Huffman tables: long codes that the lookups must fall back from.
    source.save(OUT / "ycbcr_420_optimised.jpg", quality=100, subsampling="4:2:0", optimize=True)


if __name__ == "__main__":
    main()
