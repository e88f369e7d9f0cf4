"""Pictures of the lab VM's screen: their text (OCR with Debian's tesseract-ocr), the colour of a region,
whether a region changed. Pure functions of PNG files; the Machine takes the pictures.

OCR is the slow, flaky check (seconds per picture, misread letters), so a picture is made easy for it
first: the text's part of the screen only, grey, dark letters on white, scaled up to the size of print
tesseract is trained on. The colour of a region and whether it changed cost milliseconds: cheaper
checks that a screen shows something, where its exact words do not matter.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from imagegen.errors import ImagegenError
from imagegen.run import run

if TYPE_CHECKING:
    from PIL.Image import Image

# (left, top, right, bottom) in screen pixels, right and bottom exclusive, as Pillow crops.
Box = tuple[int, int, int, int]
Color = tuple[int, int, int]

TESSERACT = "tesseract"
TESSERACT_PACKAGE = "tesseract-ocr"
# Linux's console font is 8×16 pixels: its letters are ~10 px high, tesseract reads best at 20–40 px.
OCR_SCALE = 3
# Pixels at least this far (0–255) from the background count as text when finding where the text is.
INK_THRESHOLD = 48
# Room left around the text so that tesseract sees its first and last letters whole.
MARGIN = 8
# One character cell of the console's 8×16 font, with a pixel of slack: a change within it (the blinking
# cursor) is not a change of the screen.
CELL = (10, 18)


class OcrUnavailable(ImagegenError):
    """tesseract is not installed on this host."""


def _open(png: Path) -> Image:
    from PIL import Image  # Pillow (matplotlib depends on it); imported by the calls that need it

    with Image.open(png) as image:
        return image.convert("RGB")


def prepare_for_ocr(image: Image, scale: int = OCR_SCALE) -> Image:
    """The picture tesseract reads best: grey, dark text on white, cropped to the text, scaled up.

    A console is light letters on black; tesseract (trained on print) misreads inverted text, and an
    8×16 font's letters are too small for it. Cropping to the text first keeps the scaled picture, and
    so the OCR's time, as small as the text allows.
    """
    from PIL import ImageOps

    grey = ImageOps.grayscale(image)
    histogram = grey.histogram()
    background = max(range(256), key=histogram.__getitem__)  # the commonest shade
    if background < 128:
        grey = ImageOps.invert(grey)
        background = 255 - background
    ink = grey.point(lambda v: 255 if abs(v - background) >= INK_THRESHOLD else 0)
    bbox = ink.getbbox()
    if bbox is None:
        return grey.crop((0, 0, 1, 1)).resize((scale, scale))  # nothing on the screen
    left, top, right, bottom = bbox
    grey = grey.crop((max(0, left - MARGIN), max(0, top - MARGIN),
                      min(grey.width, right + MARGIN), min(grey.height, bottom + MARGIN)))
    grey = ImageOps.autocontrast(grey)
    from PIL import Image as PilImage

    return grey.resize((grey.width * scale, grey.height * scale), PilImage.Resampling.BICUBIC)


def tesseract_binary() -> str:
    path = shutil.which(TESSERACT)
    if path is None:
        raise OcrUnavailable(f"{TESSERACT} is not installed: reading text off the screen needs it",
                             f"run `imagegen setup` (installs Debian's {TESSERACT_PACKAGE})")
    return path


def ocr(png: Path, timeout: float = 120.0) -> str:
    """The text tesseract reads on the screen picture png (English), its blank lines dropped.
    CommandError when tesseract fails or takes longer than timeout seconds."""
    binary = tesseract_binary()
    with tempfile.TemporaryDirectory(prefix="imagegen-ocr-") as tmp:
        ready = Path(tmp) / "screen.png"
        prepare_for_ocr(_open(png)).save(ready)
        out = Path(tmp) / "text"
        # The text goes to a file: tesseract's notes ("Estimating resolution …") go to stderr, which
        # run() merges into stdout. One thread: OpenMP's threads only compete with QEMU's for the CPUs.
        run([binary, str(ready), str(out), "-l", "eng", "--psm", "3"], timeout=timeout,
            env={"OMP_THREAD_LIMIT": "1"})
        text = (out.with_suffix(".txt")).read_text(errors="replace")
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


def size(png: Path) -> tuple[int, int]:
    """The screen's (width, height) in pixels."""
    from PIL import Image

    with Image.open(png) as image:
        return image.size


def _region(image: Image, box: Box | None) -> Image:
    if box is None:
        return image
    left, top, right, bottom = box
    if not (0 <= left < right <= image.width and 0 <= top < bottom <= image.height):
        raise ValueError(f"box {box} is not inside the {image.width}×{image.height} screen "
                         "(left, top, right, bottom; right and bottom exclusive)")
    return image.crop(box)


def mean_color(png: Path, box: Box | None = None) -> Color:
    """The average (red, green, blue), 0–255 each, of box on the picture (None: the whole screen)."""
    from PIL import ImageStat

    stat = ImageStat.Stat(_region(_open(png), box))
    red, green, blue = (round(v) for v in stat.mean[:3])
    return red, green, blue


def color_distance(a: Color, b: Color) -> int:
    """The largest difference of one channel: 0 is the same colour, 255 black against white."""
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def differs(a: Path, b: Path, box: Box | None = None) -> bool:
    """Whether pictures a and b differ in box (None: the whole screen) by more than one character cell
    of the console: the text console's blinking cursor is no change, a letter typed (it moves the
    cursor too), an app drawn over the console or a new screen size is. ValueError when box is off the
    screen."""
    from PIL import ImageChops

    first, second = _open(a), _open(b)
    if first.size != second.size:
        return True  # a new mode: e.g. the guest's driver took the screen over from QEMU's placeholder
    first, second = _region(first, box), _region(second, box)
    bbox = ImageChops.difference(first, second).getbbox()
    if bbox is None:
        return False
    left, top, right, bottom = bbox
    return right - left > CELL[0] or bottom - top > CELL[1]


def keep(png: Path, dest: Path) -> Path:
    """Copy a picture into the artifacts, replacing what was there."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copyfile(png, tmp)
    os.replace(tmp, dest)
    return dest

