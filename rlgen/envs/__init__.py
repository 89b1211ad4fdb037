"""Environment families: specs (``envs/*.yml``), factories and the wrappers they need."""

from rlgen.envs.factory import check_spaces, make_env, make_vector_env
from rlgen.envs.specs import EnvSpec, data_dir, get_spec, known_env_ids

__all__ = ["EnvSpec", "check_spaces", "data_dir", "get_spec", "known_env_ids", "make_env", "make_vector_env"]
