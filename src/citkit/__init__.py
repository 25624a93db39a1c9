"""citkit: continual instruction tuning of multimodal LLMs on stock Hugging Face parts."""

__version__ = "0.1.0"

from citkit.run_config import RunConfig, build_run_config  # noqa: E402
from citkit.runner import RunResult, run  # noqa: E402

__all__ = ["RunConfig", "RunResult", "__version__", "build_run_config", "run"]
