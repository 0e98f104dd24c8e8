"""Operators on the weights themselves: the IEU optimizer hook (``decay_noise``), saliency and influence masks
(``masking``), their selection on FSDP2 shards (``sharded``), and sharding checks (``distributed``)."""
