#!/usr/bin/env python3
"""Writes tests/fixtures/images/heif/: HEIC and AVIF pictures as phones and encoders write them,
each beside its decode by the reference reader (a PNG), which `tests/it/heif.rs` compares with
imgsearch's decode.

- iphone.heic: laid out as an iPhone writes its photos: stored sideways with the container's
  rotation (irot) and EXIF orientation 6, as a grid of tiles, with a thumbnail of 320 pixels, and
  the camera, the date and a GPS position in its EXIF.
- alpha.heic: a picture with an alpha channel.
- tenbit.heic: 10 bits per channel (an iPhone's HDR photos).
- astronaut.avif: AVIF, whose major brand is `avif`.

HEIC with pillow-heif (libheif and x265), AVIF with Pillow's own AVIF plugin (libavif); both
decode them again for the reference PNGs.

    pip install pillow pillow-heif numpy && python3 scripts/make_heif_fixtures.py
"""
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "tests" / "fixtures" / "images"
OUT = IMAGES / "heif"


def exif_of_an_iphone():
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the pixels are stored turned 90° counter-clockwise
    exif[0x010F] = "Apple"
    exif[0x0110] = "iPhone 15 Pro"
    exif.get_ifd(0x8769)[0x9003] = "2024:07:14 18:30:00"  # DateTimeOriginal
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (38.0, 43.0, 20.28)  # Lisbon: 38.7223 N
    gps[3], gps[4] = "W", (9.0, 8.0, 21.48)  # 9.1393 W
    return exif


def reference(name, out_name):
    Image.open(OUT / name).save(OUT / out_name)


def main():
    OUT.mkdir(exist_ok=True)
    pillow_heif.register_heif_opener()
    # The camera's sensor reads the scene sideways; the phone stores it so and says how to turn it.
    scene = Image.open(IMAGES / "rocket.jpg").convert("RGB")
    stored = scene.transpose(Image.Transpose.ROTATE_90)
    stored.save(OUT / "iphone.heic", exif=exif_of_an_iphone().tobytes(), quality=60, tile_size=256, thumbnails=[320])
    reference("iphone.heic", "iphone.png")

    Image.open(IMAGES / "chelsea_alpha.png").convert("RGBA").save(OUT / "alpha.heic", quality=60)
    reference("alpha.heic", "alpha.png")

    deep = np.asarray(Image.open(IMAGES / "astronaut.jpg").convert("RGB").resize((256, 192)), dtype=np.uint16)
    deep = (deep << 8) | deep  # full 16-bit range, stored at 10 bits
    heif = pillow_heif.from_bytes(mode="RGB;16", size=(256, 192), data=deep.tobytes())
    heif.save(OUT / "tenbit.heic", quality=60)
    reference("tenbit.heic", "tenbit.png")

    Image.open(IMAGES / "astronaut.jpg").convert("RGB").resize((320, 240)).save(OUT / "astronaut.avif", quality=60)
    reference("astronaut.avif", "astronaut_avif.png")


if __name__ == "__main__":
    main()
