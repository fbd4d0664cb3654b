"""``CRITERIA``: ``{criterion name: function}``, imported on first use by ``tfmot_easiedge.importance``."""
from tfmot_easiedge.importance import _CRITERION_FUNCTIONS, get

CRITERIA = {name: get(name) for name in _CRITERION_FUNCTIONS}
