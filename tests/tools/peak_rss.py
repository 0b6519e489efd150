"""Peak resident memory of reading one video through the test pipeline, in a fresh process (run as a script).

    python tests/tools/peak_rss.py VIDEO FRAMES   →   {"baseline_mb": …, "peak_mb": …, "shape": […]}

``baseline_mb`` is the peak after imports and a warm-up read of a tiny clip (allocator, codec tables); ``peak_mb``
the peak after reading VIDEO with FRAMES frames (segment centres; more frames than the video has repeat indices).
Linux reports ``ru_maxrss`` in KiB.
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
from pathlib import Path

import numpy as np


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(video: str, frames: int) -> dict:
    from vificlip.data.writer import write_video
    from vificlip.tools.predict import load_video_tensor

    with tempfile.TemporaryDirectory() as tmp:
        tiny = write_video(Path(tmp) / "warm.mp4", np.zeros((4, 64, 96, 3), np.uint8))
        load_video_tensor(tiny, num_frames=4, input_size=224)
    baseline = peak_mb()
    views = load_video_tensor(video, num_frames=frames, input_size=224)
    return {"baseline_mb": round(baseline, 1), "peak_mb": round(peak_mb(), 1), "shape": list(views.shape)}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
