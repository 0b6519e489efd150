"""Training, evaluation and the paper's protocols (SPEC §3, §4); see docs/engine.md.

Train one run with ``vificlip.engine.train.train(cfg)`` (not re-exported here: the name would shadow the module).
"""

from .config import RunConfig, load_config
from .evaluate import run_eval
from .protocols import run_protocol
from .report import ProtocolResult, merge_reports

__all__ = ["ProtocolResult", "RunConfig", "load_config", "merge_reports", "run_eval", "run_protocol"]
