"""xmodal's registries: children of mmengine's roots, so mmengine's Runner builds xmodal parts.

A config names a part by its class name (``dict(type="KDLoss")``); ``locations`` lets a registry
import the module that defines the class the first time it is asked for it.
"""

import mmengine.registry as _mmengine_registry
from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

MODELS = Registry(
    "model",
    parent=MMENGINE_MODELS,
    locations=["xmodal.models", "xmodal.distill"],
)
DATASETS = Registry("dataset", parent=MMENGINE_DATASETS, locations=["xmodal.data"])
TRANSFORMS = Registry("transform", parent=MMENGINE_TRANSFORMS, locations=["xmodal.data"])
DATA_SAMPLERS = Registry("data sampler", parent=MMENGINE_DATA_SAMPLERS, locations=["xmodal.data"])
METRICS = Registry("metric", parent=MMENGINE_METRICS, locations=["xmodal.evaluation"])
HOOKS = Registry("hook", parent=MMENGINE_HOOKS, locations=["xmodal.engine", "xmodal.distill"])
LOOPS = Registry("loop", parent=MMENGINE_LOOPS, locations=["xmodal.engine"])
OPTIM_WRAPPERS = Registry("optim_wrapper", parent=MMENGINE_OPTIM_WRAPPERS, locations=["xmodal.engine"])

# The roots xmodal adds nothing to still need an "xmodal" child: with default_scope="xmodal", mmengine looks
# for one in every root it builds from (optimizer, scheduler, visualizer, ...) and warns when it is missing.
FALLBACK_ROOTS = {name: Registry(root.name, parent=root, scope="xmodal")
                  for name, root in vars(_mmengine_registry).items()
                  if isinstance(root, Registry) and root.parent is None and name not in (
                      "MODELS", "DATASETS", "TRANSFORMS", "DATA_SAMPLERS", "METRICS", "HOOKS", "LOOPS",
                      "OPTIM_WRAPPERS")}

__all__ = ["MODELS", "DATASETS", "TRANSFORMS", "DATA_SAMPLERS", "METRICS", "HOOKS", "LOOPS", "OPTIM_WRAPPERS"]
