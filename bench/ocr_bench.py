"""How each way of preparing a screen picture for OCR reads it, and how long tesseract takes (figures
for imagegen.testing.screen's choice, not a test).

Give it screenshots of the lab VM (an `imagegen test` run keeps `screen-main.png` in its artifacts) and
what must be read on them:

    python bench/ocr_bench.py ARTIFACTS/screen-main.png --expect 'laptop login:' [--runs 3]

Each variant is timed over --runs runs of tesseract (one thread, as the test API runs it); the table
says whether --expect was found and the first line read.
"""

from __future__ import annotations

import argparse
import functools
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageOps

from imagegen.run import run
from imagegen.testing import screen

Prepare = Callable[[Image.Image], Image.Image]


def _scaled(image: Image.Image, scale: int) -> Image.Image:
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.BICUBIC)


def variants() -> dict[str, Prepare]:
    found: dict[str, Prepare] = {
        "as it is": lambda image: image,
        "grey": ImageOps.grayscale,
        "grey, inverted": lambda image: ImageOps.invert(ImageOps.grayscale(image)),
        "grey, inverted, ×3 (whole screen)": lambda image: _scaled(ImageOps.invert(ImageOps.grayscale(image)), 3),
    }
    for scale in (1, 2, 3, 4):
        found[f"cropped to the text, grey, inverted, ×{scale}"] = functools.partial(screen.prepare_for_ocr,
                                                                                     scale=scale)
    return found


def read(picture: Image.Image, tmp: Path) -> tuple[str, float]:
    png, out = tmp / "in.png", tmp / "out"
    picture.save(png)
    start = time.monotonic()
    run([screen.tesseract_binary(), str(png), str(out), "-l", "eng", "--psm", "3"], timeout=300,
        env={"OMP_THREAD_LIMIT": "1"})
    seconds = time.monotonic() - start
    return out.with_suffix(".txt").read_text(errors="replace"), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pictures", nargs="+", type=Path)
    parser.add_argument("--expect", required=True, help="a regular expression the text must match")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    pattern = re.compile(args.expect, re.MULTILINE)
    with tempfile.TemporaryDirectory(prefix="imagegen-ocr-bench-") as tmp:
        for path in args.pictures:
            with Image.open(path) as opened:
                image = opened.convert("RGB")
            print(f"{path} ({image.width}×{image.height}), expecting {args.expect!r}")
            for name, prepare in variants().items():
                picture = prepare(image)
                times = []
                for _ in range(args.runs):
                    text, seconds = read(picture, Path(tmp))
                    times.append(seconds)
                lines = [line.strip() for line in text.splitlines() if line.strip()]
                found = "found" if pattern.search("\n".join(lines)) else "MISSED"
                first = lines[0][:50] if lines else "(nothing)"
                print(f"  {name:<42} {picture.width:>5}×{picture.height:<5} {statistics.median(times):6.2f} s "
                      f"(min {min(times):.2f})  {found:<6}  {first!r}")


if __name__ == "__main__":
    main()
