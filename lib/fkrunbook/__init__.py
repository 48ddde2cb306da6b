"""fkrunbook: Jupyter runbooks that add missing foreign keys to a live Supabase schema safely."""
from .database import Database, connect
from .environment import Environment, get_environment, load_environments
from .errors import FkrunbookError
from .spec import Spec, load_spec

__all__ = ["Database", "Environment", "FkrunbookError", "Spec", "connect", "get_environment",
           "load_environments", "load_spec"]
__version__ = "0.1.0"
