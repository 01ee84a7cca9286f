"""FCOS-style detection: which box loss explodes where, over learning rate and init scale.

    python -m experiments.sweep --config=configs/coco_detection.py --workdir=runs/detection

The 'detector' model (`gradlab.models.detector`: 3 ReLU convs of 8 channels, each with
stride 2, so one stride-8 feature map; a class tower and a box tower of one conv each;
per-location class logits, (l, t, r, b) distances = 8 softplus(output) in pixels,
centerness) on 'multishapes' (`gradlab.data.detection_data`, generated offline: 1 to 4
of 4 shape classes per noisy 64 x 64 image, boxes in PIXELS), He init scaled by sigma_w,
SGD with momentum 0.9, batch 16, 300 steps. The loss is FCOS's: the focal loss over
every location and class, plus the box loss on the positive locations, plus the
centerness cross-entropy (`gradlab.detection`), with the box loss a static axis:
train.box_loss in {l2, huber, giou} gives the three panels (three compiles). Axes: 3
weight scales sigma_w in {0.5, 1, 2} x 8 learning rates in [1e-4, 0.3]: 72 runs, 8 min
46 s on the 2-core CPU shared with other jobs (471 s running, 38 s compiling). Every run
reports test_map50 (mAP at IoU 0.5 over the 500 test images) and test_mean_iou (mean
IoU of the matched detections).

The targets are unbounded in the sense of Girshick 2015 ("Fast R-CNN", Sec. 2.3): an
L2 box loss has gradients of the pixel error itself, the smooth-L1 (Huber) one at most
1, the GIoU one (Rezatofighi et al. 2019) of order 1 / box size. docs/detection.md has
the map and its numbers.

The quick variant (``--config.quick=True``, about 30 s here) is the smoke size the tests
run: GIoU only, sigma_w 1, learning rates 3e-3 and 0.03, 20 steps: 2 runs, 1 compile.

COCO (TFDS ``coco/2017``, 80 classes, letterboxed to ``data.image_size``; needs
tensorflow and the dataset prepared in ``data.data_dir``, see `gradlab.data.
detection_data`) is the same study at scale; dry-run it here on mock records:

    python -m experiments.sweep --config=configs/coco_detection.py --config.quick=True \\
        --config.data.name=coco --config.data.mock=8
    python -m experiments.sweep --config=configs/coco_detection.py --config.data.name=coco \\
        --config.data.data_dir=DIR --config.data.image_size=256 --config.model.width=64 \\
        --config.model.depth=8 --config.model.head_depth=4 --config.model.norm=group
"""

from gradlab.config import make_axes
from gradlab.defaults import base_config


def get_config():
  c = base_config()
  c.model.name = "detector"
  c.model.depth = 3
  c.model.width = 8
  c.model.downsample = 3
  c.model.head_depth = 1
  c.model.activation = "relu"
  c.init.family = "he"
  c.init.sigma_b = 0.0
  c.data.name = "multishapes"
  c.data.image_size = 64  # coco: the letterbox size (multishapes is 64 x 64 anyway)
  c.data.max_objects = 16
  c.data.batch_size = 16
  c.optimizer.name = "momentum"
  c.train.loss = "auto"  # the task's: 'detection'
  c.train.steps = 300
  c.train.log_every = 10
  c.train.eval_size = 512
  axes = {
    "init.sigma_w": [0.5, 1.0, 2.0],
    "optimizer.learning_rate": [1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3],
    "train.box_loss": ["l2", "huber", "giou"],
  }
  c.sweep.axes = make_axes(axes)
  c.quick_overrides = make_axes({
    "train.steps": 20,
    "train.log_every": 10,
    "train.eval_size": 64,
    "sweep.axes": {"init.sigma_w": [1.0], "optimizer.learning_rate": [0.003, 0.03],
                   "train.box_loss": ["giou"]},
  })
  return c
