"""The training configuration: the presets, what each hyper-parameter means and which values
it may take, and the model a configuration describes. Shared by `minivit.train`,
`minivit.evaluate` and `minivit.bench`; checked before any data is read or file written.
"""
import math

from .model import ViT

IMG_SIZE, IN_CHANS, NUM_CLASSES = 32, 3, 10

# Every hyper-parameter, with the value of each preset. 'cpu' is sized for a 2-core laptop
# (see README for the time and accuracy it reaches): under a 2-hour budget a small ViT
# underfits, so it spends the budget on epochs (40 take 1.5-2 h at 390-300 img/s) with light
# augmentation and average-pools the patch tokens (Beyer et al. 2022, "Better plain ViT
# baselines": GAP learns faster than [CLS]); batch 64 takes twice the optimiser steps of
# 128 for the same cost per image; by epoch 40 train accuracy runs ahead of test accuracy,
# which stochastic depth 0.1 holds back at no cost per image; the test set is evaluated
# every 3rd epoch (docs/cpu-recipe.md has the measurements).
# 'gpu' is a DeiT-style recipe.
PRESETS = {
    "cpu": dict(patch_size=4, embed_dim=128, depth=6, num_heads=4, mlp_ratio=2.0,
                drop_rate=0.0, attn_drop_rate=0.0, drop_path=0.1, global_pool="avg",
                head="linear", fc_norm=False, epochs=40, batch_size=64, lr=1e-3, min_lr=1e-5,
                weight_decay=0.05, warmup_epochs=2, label_smoothing=0.1, clip_grad=None,
                crop_pad=4, hflip=True, mixup=0.0, cutmix=0.0, mix_prob=1.0, eval_every=3),
    "gpu": dict(patch_size=4, embed_dim=384, depth=7, num_heads=12, mlp_ratio=2.0,
                drop_rate=0.0, attn_drop_rate=0.0, drop_path=0.1, global_pool="token",
                head="linear", fc_norm=False, epochs=200, batch_size=256, lr=1e-3, min_lr=1e-5,
                weight_decay=0.05, warmup_epochs=10, label_smoothing=0.1, clip_grad=None,
                crop_pad=4, hflip=True, mixup=0.8, cutmix=1.0, mix_prob=1.0, eval_every=1),
}
# run settings that are part of a run's config (the same for every preset)
RUN_DEFAULTS = dict(seed=0, limit_train=None, limit_test=None, val_split=0, log_every=50,
                    eval_batch_size=500)
MODEL_KEYS = ("patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "drop_rate",
              "attn_drop_rate", "global_pool", "head", "fc_norm")
# keys added after runs were already saved: a config without one runs as it did then
LATER_KEYS = {"fc_norm": False, "eval_every": 1, "val_split": 0}


def setting(cfg, key):
    """cfg[key], or for a config saved before the key existed, the behaviour of that time."""
    return cfg.get(key, LATER_KEYS.get(key))


# One line of help per hyper-parameter (the command's --help adds each preset's value).
HELP = {
    "epochs": "passes over the training set",
    "batch_size": "images per optimiser step",
    "lr": "peak learning rate, reached after the warm-up, then cosine decay",
    "min_lr": "learning rate at the end of the cosine decay (at most --lr)",
    "weight_decay": "AdamW's decoupled weight decay (not applied to norms, biases, tokens)",
    "warmup_epochs": "epochs of linear learning-rate warm-up (fractions allowed; shorter "
                     "than --epochs; scaled with --epochs when only --epochs is given)",
    "label_smoothing": "cross-entropy label smoothing, in [0, 1)",
    "clip_grad": "clip the global gradient norm to this value (0: no clipping)",
    "patch_size": "side of the square patches in pixels (must divide 32)",
    "embed_dim": "token width D (a multiple of --num-heads)",
    "depth": "number of encoder blocks",
    "num_heads": "attention heads per block (must divide --embed-dim)",
    "mlp_ratio": "MLP hidden width as a multiple of --embed-dim",
    "drop_rate": "dropout on the embeddings, attention output, MLP and head, in [0, 1)",
    "attn_drop_rate": "dropout on the attention weights, in [0, 1)",
    "drop_path": "stochastic depth of the last block (linear from 0 at the first), in [0, 1)",
    "crop_pad": "random crop after zero-padding each side by this many pixels (0: none)",
    "hflip": "random horizontal flips",
    "mixup": "mixup Beta(alpha, alpha) parameter (0: off)",
    "cutmix": "cutmix Beta(alpha, alpha) parameter (0: off)",
    "mix_prob": "probability that a batch is mixed when mixup or cutmix is on, in [0, 1]",
    "eval_every": "evaluate on the test set after every N-th epoch and after the last one "
                  "(a pass costs time that training could use)",
    "global_pool": "'avg': mean of the patch tokens, 'token': the [CLS] token",
    "head": "'linear' classifier, or 'mlp' (a tanh hidden layer first)",
    "fc_norm": "apply the final LayerNorm after pooling (timm's fc_norm, its layout for "
               "--global-pool avg) instead of before it",
}


def _number(v, integer):
    if isinstance(v, bool):
        return False
    if integer:
        return isinstance(v, int)
    return isinstance(v, (int, float)) and math.isfinite(v)


# (key, integer?, the rule as a user reads it (may name other values), the check)
RULES = [
    ("epochs", True, ">= 1", lambda v, c: v >= 1),
    ("batch_size", True, ">= 1", lambda v, c: v >= 1),
    ("lr", False, "> 0", lambda v, c: v > 0),
    ("min_lr", False, ">= 0 and at most --lr ({lr})", lambda v, c: 0 <= v <= c["lr"]),
    ("weight_decay", False, ">= 0", lambda v, c: v >= 0),
    ("warmup_epochs", False, ">= 0 and less than --epochs ({epochs})", lambda v, c: 0 <= v < c["epochs"]),
    ("label_smoothing", False, "in [0, 1)", lambda v, c: 0 <= v < 1),
    ("clip_grad", False, ">= 0 (0: no clipping)", lambda v, c: v >= 0),
    ("patch_size", True, f"between 1 and {IMG_SIZE} and a divisor of {IMG_SIZE}",
     lambda v, c: 1 <= v <= IMG_SIZE and IMG_SIZE % v == 0),
    ("embed_dim", True, ">= 1", lambda v, c: v >= 1),
    ("depth", True, ">= 1", lambda v, c: v >= 1),
    ("num_heads", True, ">= 1 and a divisor of --embed-dim ({embed_dim})",
     lambda v, c: v >= 1 and c["embed_dim"] % v == 0),
    ("mlp_ratio", False, "> 0, with --embed-dim ({embed_dim}) x --mlp-ratio >= 1",
     lambda v, c: v > 0 and int(c["embed_dim"] * v) >= 1),
    ("drop_rate", False, "in [0, 1)", lambda v, c: 0 <= v < 1),
    ("attn_drop_rate", False, "in [0, 1)", lambda v, c: 0 <= v < 1),
    ("drop_path", False, "in [0, 1)", lambda v, c: 0 <= v < 1),
    ("crop_pad", True, f"between 0 and {IMG_SIZE}", lambda v, c: 0 <= v <= IMG_SIZE),
    ("mixup", False, ">= 0 (0: off)", lambda v, c: v >= 0),
    ("cutmix", False, ">= 0 (0: off)", lambda v, c: v >= 0),
    ("mix_prob", False, "in [0, 1]", lambda v, c: 0 <= v <= 1),
    ("eval_every", True, ">= 1", lambda v, c: v >= 1),
    ("seed", True, ">= 0", lambda v, c: v >= 0),
    ("limit_train", True, ">= 1 (omit it for all images)", lambda v, c: v >= 1),
    ("limit_test", True, ">= 1 (omit it for all images)", lambda v, c: v >= 1),
    ("val_split", True, ">= 0 (0: no validation set)", lambda v, c: v >= 0),
    ("log_every", True, ">= 1", lambda v, c: v >= 1),
    ("eval_batch_size", True, ">= 1", lambda v, c: v >= 1),
]
CHOICES = {"global_pool": ("avg", "token"), "head": ("linear", "mlp"), "hflip": (True, False),
           "fc_norm": (True, False)}
OPTIONAL = ("clip_grad", "limit_train", "limit_test")   # None means "off" / "all"


def flag(key):
    return "--" + key.replace("_", "-")


def validate_config(cfg):
    """Raise ValueError naming the flag of the first value out of its range; returns cfg.
    Also used on a checkpoint's config, so a damaged or hand-edited run is refused."""
    if not isinstance(cfg, dict):
        raise ValueError(f"a configuration must be a mapping, got {type(cfg).__name__}")
    missing = [k for k in (*PRESETS["cpu"], *RUN_DEFAULTS) if k not in cfg and k not in LATER_KEYS]
    if missing:
        raise ValueError("the configuration lacks " + ", ".join(missing))
    for key, integer, rule, ok in RULES:
        v = setting(cfg, key)
        if v is None and key in OPTIONAL:
            continue
        if not _number(v, integer) or not ok(v, cfg):
            raise ValueError(f"{flag(key)} must be {'an integer' if integer else 'a number'} "
                             f"{rule.format(**cfg)}, got {v!r}")
    for key, choices in CHOICES.items():
        if setting(cfg, key) not in choices:
            raise ValueError(f"{flag(key)} must be one of {choices}, got {cfg[key]!r}")
    return cfg


def make_model(cfg, device="cpu", kernels="auto"):
    """The ViT a (validated) config describes."""
    return ViT(img_size=IMG_SIZE, in_chans=IN_CHANS, num_classes=NUM_CLASSES,
               drop_path_rate=cfg["drop_path"], seed=cfg["seed"], device=device,
               kernels=kernels, **{k: setting(cfg, k) for k in MODEL_KEYS})
