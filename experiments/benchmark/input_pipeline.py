"""`--preset=input`: the grain input pipeline's images per second on mock ImageNet,
against the decode rate of one core.

    python -m experiments.benchmark --preset=input [--input_examples=512] [--input_workers=0]

The records: ``data.mock`` imagenet2012 records (TFDS's generated labels), each image
redrawn at ImageNet's typical training size (`IMAGE_HW`, about the mean of the
training set's 1.28 M images: 400 x 350 is the usual figure) as smooth noise and
stored as a JPEG (quality `JPEG_QUALITY`), so that reading a record costs what a real
array_record read costs: a JPEG decode (PIL) where TFDS would do it, then the training
transform of the streamed path (`gradlab.data.imagenet.ImagenetReader`: the
random-resized crop and flip to ``image_size``, standardization; `gradlab.data.pipeline`).

Two readers of the same segments, in one process, one after another:
1. one core: the main process decodes and transforms every record (the host-side
   anchor: what one core sustains);
2. grain: `gradlab.data.grain_feed` with ``workers`` processes (0: one per core), the
   segment put on device (``jax.device_put``, waited for) as a sweep does.
Reported: images per second of each (grain's over the segments after the first, and its
start-up, the first segment's latency, apart) and their ratio.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np

IMAGE_HW = (350, 400)
JPEG_QUALITY = 90
SEGMENTS = 4


class JpegRecords:
  """A data source of {'image': uint8 (H, W, 3) decoded from stored JPEG bytes, 'label'}."""

  def __init__(self, jpegs: list[bytes], labels: list[int]):
    self.jpegs, self.labels = jpegs, labels

  def __len__(self) -> int:
    return len(self.jpegs)

  def __getitem__(self, i: int) -> dict[str, Any]:
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(self.jpegs[i])).convert("RGB"))
    return {"image": image, "label": self.labels[i]}


def mock_jpegs(n: int, seed: int = 0) -> JpegRecords:
  """`n` mock imagenet2012 records (`gradlab.data.mock`) with their images redrawn at
  `IMAGE_HW` (smooth noise: a random 12 x 16 grid upsampled) and JPEG-encoded."""
  from PIL import Image

  from gradlab.data import mock, pipeline

  splits, _ = mock.read_mock_splits("imagenet2012", n, "imagenet2012",
                                    lambda src, info: pipeline.fetch(src, range(len(src))),
                                    ("train",))
  rng = np.random.default_rng(seed)
  jpegs, labels = [], []
  for record in splits["train"]:
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize(IMAGE_HW[::-1], Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    jpegs.append(buffer.getvalue())
    labels.append(int(record["label"]))
  return JpegRecords(jpegs, labels)


def run_input_benchmark(examples: int = 512, image_size: int = 224, workers: int = 0,
                        seed: int = 0) -> dict[str, Any]:
  """The measurements of the module docstring, as a dict (benchmark.json's 'input')."""
  import jax

  from gradlab.data import grain_feed, pipeline
  from gradlab.data.imagenet import ImagenetReader
  from gradlab.host_devices import cores

  source = mock_jpegs(examples, seed)
  reader = ImagenetReader(image_size, "inception_crop")
  mean = np.array([[[[123.7, 116.3, 103.5]]]], np.float64)  # ImageNet's channel means
  std = np.array([[[[58.4, 57.1, 57.4]]]], np.float64)      # and deviations (0-255)
  decoder = pipeline.Decoder(reader, mean, std, seed)
  plan = [np.random.default_rng([seed, s]).permutation(examples) for s in range(SEGMENTS)]
  workers = workers or cores()

  start = time.perf_counter()
  one_core = [pipeline.read(source, decoder, idx, s) for s, idx in enumerate(plan[:2])]
  one_core_s = time.perf_counter() - start

  start = time.perf_counter()
  feed = grain_feed.grain_segments(source, decoder, plan, True, workers)
  stamps, fed = [], []
  for x, y in feed:
    jax.block_until_ready(jax.device_put((x, y)))
    stamps.append(time.perf_counter())
    fed.append(x)
  first_s = stamps[0] - start
  steady_s = stamps[-1] - stamps[0]
  same = all(np.array_equal(a[0], b) for a, b in zip(one_core, fed[:2], strict=True))
  one_rate = 2 * examples / one_core_s
  grain_rate = (SEGMENTS - 1) * examples / steady_s
  return {
    "examples_per_segment": examples, "segments": SEGMENTS, "image_size": image_size,
    "stored_image_hw": list(IMAGE_HW), "workers": workers, "host_cores": cores(),
    "one_core_images_per_s": one_rate, "grain_images_per_s": grain_rate,
    "grain_first_segment_s": first_s, "ratio": grain_rate / one_rate,
    "same_examples": bool(same),
  }


def input_markdown(r: dict[str, Any]) -> str:
  """The input preset's table."""
  return "\n".join([
    "## Input pipeline (mock ImageNet, JPEG records at "
    f"{r['stored_image_hw'][1]} x {r['stored_image_hw'][0]}, random-resized crop to "
    f"{r['image_size']})",
    "",
    "| reader | images/s | note |",
    "|---|---:|---|",
    f"| one core (main process) | {r['one_core_images_per_s']:.1f} | the host-side anchor |",
    f"| grain, {r['workers']} workers, to device | {r['grain_images_per_s']:.1f} | "
    f"segments 2-{r['segments']}; first segment after {r['grain_first_segment_s']:.1f} s |",
    "",
    f"grain / one core: {r['ratio']:.2f}x on {r['host_cores']} host cores; the two readers "
    f"gave {'the same' if r['same_examples'] else 'DIFFERENT'} examples.",
  ])
