"""What one pass through retouchd costs a JPEG whose pixels a step changed: re-encoding with the source's own
tables (`quality = "same"`, the default) against a fixed quality 92. An untouched image costs nothing: it is
copied byte for byte (tests/test_untouched.py).

Each holdout photo is saved as a quality-80 JPEG (the "upload"), decoded, and encoded again both ways; the
table gives the largest and the mean pixel change against the upload and the file sizes.

    python bench/generation_loss.py [--set holdout] [--count 4] [--quality 80]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from photoset import photos
from retouchd.images import OutputSpec, decode, encode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", default="holdout", choices=("tune", "holdout", "fresh"))
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--quality", type=int, default=80)
    args = parser.parse_args()
    rows = []
    print(f"{'photo':14} {'upload B':>9} | {'same: max':>9} {'mean':>6} {'bytes':>7} | {'q92: max':>8} {'mean':>6} "
          f"{'bytes':>7}")
    for name, rgb in photos(args.set)[: args.count]:
        upload = io.BytesIO()
        Image.fromarray(rgb).save(upload, "JPEG", quality=args.quality)
        decoded = decode(upload.getvalue(), max_pixels=10**9)
        row: dict[str, object] = {"photo": name, "upload_bytes": len(upload.getvalue())}
        for quality in ("same", 92):
            out = io.BytesIO()
            encode(decoded.frame, decoded.info, OutputSpec(quality=quality), out)
            again = decode(out.getvalue(), max_pixels=10**9).frame.rgb.astype(np.int16)
            diff = np.abs(again - decoded.frame.rgb)
            row[f"{quality}_max"], row[f"{quality}_mean"] = int(diff.max()), round(float(diff.mean()), 3)
            row[f"{quality}_bytes"] = len(out.getvalue())
        rows.append(row)
        print(f"{name:14} {row['upload_bytes']:>9} | {row['same_max']:>9} {row['same_mean']:>6} "
              f"{row['same_bytes']:>7} | {row['92_max']:>8} {row['92_mean']:>6} {row['92_bytes']:>7}")
    print(json.dumps({"benchmark": "generation_loss", "set": args.set, "upload_quality": args.quality,
                      "rows": rows}))


if __name__ == "__main__":
    main()
