"""The multi-stage recommendation pipeline: recall channels -> merge -> rank -> rerank ->
explanations, configured from TOML (`spec`), run by `RecPipeline` (`core`), merged by
`RecallStage` (`recall`) and saved as a folder (`persist`). `lmrec eval` measures it and
`lmrec serve` serves it: one object, one code path."""

from lmrec.pipeline.core import PipelineConfig, RecPipeline
from lmrec.pipeline.recall import Channel, RecallStage
from lmrec.pipeline.spec import PipelineSpec, load_spec, resolve_config_path

__all__ = ["PipelineConfig", "RecPipeline", "Channel", "RecallStage", "PipelineSpec", "load_spec",
           "resolve_config_path"]
