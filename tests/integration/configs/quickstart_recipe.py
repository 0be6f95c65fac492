# The quickstart with every part of the modern recipe that carries state or randomness
# across iterations: EMA (with momentum warm-up), MixUp/CutMix, gradient accumulation,
# clipping. The exact-resume tests train with it.
_base_ = ["../../../configs/quickstart.py"]
data = dict(batch_augments=[dict(type="MixUp", alpha=0.2), dict(type="CutMix", alpha=1.0)])
grad = dict(accumulate=2, max_norm=5.0)
ema = dict(enabled=True, momentum=0.01, warmup_iters=10, momentum_warmup=0.2)
