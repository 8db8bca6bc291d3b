"""Celery tasks of the five cadences (五诊, SPEC §5; issue #4). Thin: each calls service.cadences."""
