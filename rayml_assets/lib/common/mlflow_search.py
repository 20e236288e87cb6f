"""Clauses of MLflow's ``search_runs`` filter strings.

MLflow's parser strips a value's enclosing quotes and unescapes nothing: measured on MLflow 3 with
the sqlite store, ``tags.t = 'it\\'s'`` matches no run, and neither does ``'it''s'``, while
``"it's"`` matches it. So a value is quoted with the quote it does not contain; a value holding both
has no literal in that syntax and is refused, rather than matching the wrong runs or none.
"""

from __future__ import annotations


def tag_equals(tag: str, value: str) -> str:
    """``tags.`tag` = '<value>'``, with the quote ``value`` lacks."""
    if "'" not in value:
        return f"tags.`{tag}` = '{value}'"
    if '"' not in value:
        return f'tags.`{tag}` = "{value}"'
    raise ValueError(f"an MLflow filter cannot match the tag {tag} = {value!r}: it holds both quote characters")
