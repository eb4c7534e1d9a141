"""Model-parallel embedding tables through TorchRec's planner (optional ``recforge[torchrec]``).

Data parallelism (``training/distributed.py``, DDP) copies every table to every process; a table
that outgrows one device has to be split across them instead (DLRM, Naumov et al. 2019, Sec. 4:
"model parallelism for the embeddings, data parallelism for the MLPs"). TorchRec's
``EmbeddingShardingPlanner`` chooses a sharding per table (table-wise, row-wise, column-wise, data
parallel) from the topology and the tables' sizes, and ``DistributedModelParallel`` wraps the model
so that the sharded tables exchange pooled embeddings by all-to-all while the dense part is
replicated under DDP. A model takes part when its tables are a
:class:`recforge.layers.torchrec_tables.TorchRecEmbeddingCollection` (DLRM with
``model.embedding_backend: torchrec``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from recforge.errors import ConfigError
from recforge.layers.torchrec_tables import _torchrec


def shard_embedding_tables(model: nn.Module, device: torch.device, process_group: Any = None,
                           sharding_types: Sequence[str] | None = None) -> nn.Module:
    """Plan and shard the model's TorchRec tables across the processes of ``process_group``.

    The model's current weights are kept: sharding re-creates the tables, so they are copied
    back from the model's state before sharding (every rank must hold the same weights, as DDP
    also requires).

    Args:
        model: a model whose tables are TorchRec modules (built on ``device``).
        device: this rank's device (``cpu`` with gloo, ``cuda:LOCAL_RANK`` with NCCL).
        process_group: the group to shard over (None: the default group, which must exist).
        sharding_types: restrict every table to these TorchRec sharding types (for example
            ``["table_wise"]``, ``["row_wise"]``); None lets the planner choose (on small CPU
            tables it picks ``data_parallel``).

    Returns:
        The ``DistributedModelParallel`` wrapper; call it like the model.

    Raises:
        ConfigError: without torchrec, without an initialised process group, or if the model has
            no TorchRec tables.
    """
    _torchrec()
    import torch.distributed as dist
    from torchrec.distributed import DistributedModelParallel
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    if not dist.is_available() or not dist.is_initialized():
        raise ConfigError("sharding embedding tables needs a torch.distributed process group (launch with torchrun)")
    if not any(isinstance(m, EmbeddingBagCollection) for m in model.modules()):
        raise ConfigError("the model has no TorchRec embedding tables to shard (for DLRM set model.embedding_backend: torchrec)")
    group = process_group or dist.group.WORLD
    world = dist.get_world_size(group)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    sharders = [EmbeddingBagCollectionSharder()]
    constraints = None
    if sharding_types is not None:
        tables = [c.name for m in model.modules() if isinstance(m, EmbeddingBagCollection) for c in m.embedding_bag_configs()]
        constraints = {name: ParameterConstraints(sharding_types=list(sharding_types)) for name in tables}
    planner = EmbeddingShardingPlanner(topology=Topology(world_size=world, compute_device=device.type), constraints=constraints)
    plan = planner.collective_plan(model, sharders, group)
    sharded = DistributedModelParallel(module=model, device=device, plan=plan, sharders=sharders, init_data_parallel=True)
    sharded.load_state_dict(state)
    return sharded
