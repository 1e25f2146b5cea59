"""judge-arena: an automated arena with LLM judges, raw and style-normalized, with Bradley–Terry ratings."""

from judge_arena._offline import configure_offline

configure_offline()
