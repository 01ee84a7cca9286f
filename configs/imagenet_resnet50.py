"""ResNet-50 on ImageNet: BatchNorm vs no normalization with AGC vs SkipInit, over
learning rate and init scale, for SGD+momentum, Adam, Nadam and Gadam.

    python -m experiments.sweep --config=configs/imagenet_resnet50.py --workdir=runs/in50
    python -m experiments.sweep --config=configs/imagenet_resnet50.py --config.quick=True

The accelerator study: ResNet-50 v1.5 (`gradlab.models.resnet_imagenet`, 25.6 M
parameters, He-normal init, no conv biases) on ``imagenet2012`` through TFDS at 224 x 224,
batch 256, 2000 steps. The train split streams through the grain pipeline
(``data.pipeline='grain'``, `gradlab.data.pipeline`): segments of 25,600 images (100
steps) decoded by one worker process per host core with the random-resized crop and
flip (``data.host_augment='inception_crop'``), put on device while the previous segment
trains; evaluation on the first 10,000 validation centre crops (``data.test_size``).
The variants are the product (BatchNorm or none) x (SkipInit or not) x (AGC at 0.01 or
not), which holds the three compared by Brock et al. 2021 and De & Smith 2020
(BatchNorm; no normalization + AGC; no normalization + SkipInit) and their mixtures,
x 4 optimizers x 4 learning rates x 3 sigma_w: 384 runs, 32 compiles. ImageNet must be
prepared in ``data.data_dir`` (TFDS's manual download; a gs:// bucket on a TPU VM:
README, "TPU VM"). Dry-run the full variant's whole path here first, on mock data at
a small size (one run, under two minutes on 2 cores):

    python -m experiments.sweep --config=configs/imagenet_resnet50.py --config.data.mock=24 \
        --config.data.stream=16 --config.data.image_size=32 --config.data.test_size=8 \
        --config.data.batch_size=8 --config.model.width=8 --config.train.steps=4 \
        --config.train.log_every=2 --config.train.eval_size=8 --axis=optimizer.name=momentum \
        --axis=optimizer.learning_rate=0.1 --axis=init.sigma_w=1 --axis=model.norm=batch \
        --axis=model.residual_init=none --axis=optimizer.remedies=none

The quick variant (`--config.quick=True`) runs here, in memory: ``data.mock = 64``
generated images per split, centre-cropped at 32 x 32 (random crop and flip on
device), width 8 (8/16/32/64 bottlenecks), batch 16, 30 steps, momentum and Adam in one program
(``sweep.fuse_optimizers``), 2 learning rates at sigma_w 1: 32 runs, 8 compiles.
"""

from gradlab.config import make_axes
from gradlab.defaults import base_config

VARIANTS = {"model.norm": ["batch", "none"], "optimizer.remedies": ["none", "agc"]}


def get_config():
  c = base_config()
  c.model.name = "resnet_bottleneck"
  c.model.depth = 50
  c.model.width = 64
  c.model.activation = "relu"
  c.model.use_bias = False
  c.init.family = "he"
  c.data.name = "imagenet2012"
  c.data.image_size = 224
  c.data.pipeline = "grain"
  c.data.stream = 25600
  c.data.host_augment = "inception_crop"
  c.data.test_size = 10000
  c.data.batch_size = 256
  c.optimizer.agc_clip = 0.01
  c.train.steps = 2000
  c.train.log_every = 50
  c.train.eval_size = 1024
  axes = {
    "model.residual_init": ["none", "skipinit"],
    "model.norm": ["batch", "none"],
    "optimizer.remedies": ["none", "agc"],
    "optimizer.name": ["momentum", "adam", "nadam", "gadam"],
    "optimizer.learning_rate": [0.01, 0.1, 1.0, 3.0],
    "init.sigma_w": [0.5, 1.0, 2.0],
  }
  c.sweep.axes = make_axes(axes)
  c.quick_overrides = make_axes({
    "data.mock": 64,
    "data.pipeline": "memory",
    "data.stream": 0,
    "data.host_augment": "none",
    "data.augment": "crop_flip",
    "data.test_size": 0,
    "data.image_size": 32,
    "data.batch_size": 16,
    "model.width": 8,
    "train.steps": 30,
    "train.log_every": 10,
    "train.eval_size": 64,
    "sweep.fuse_optimizers": True,
    "sweep.axes": {**axes, "optimizer.name": ["momentum", "adam"],
                   "optimizer.learning_rate": [0.01, 0.1], "init.sigma_w": [1.0]},
  })
  return c
